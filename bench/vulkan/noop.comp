// The baseline of vk_bench.cpp: an empty dispatch, submitted and waited for per message —
// what a Vulkan program does without a persistent kernel.
#version 460
layout(local_size_x = 1) in;
void main() {}
