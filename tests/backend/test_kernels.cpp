#include "test_kernels.hpp"

RK_KERNEL("test.echo", rktest::Echo);
RK_KERNEL("test.counter", rktest::Counter);
RK_KERNEL("test.block_sum", rktest::BlockSum);
RK_KERNEL("test.faulty", rktest::Faulty);
RK_KERNEL("test.barrier_in_parallel", rktest::BarrierInParallel);
RK_KERNEL("test.forwarder", rktest::Forwarder);
RK_KERNEL("test.batch_forwarder", rktest::BatchForwarder);
RK_KERNEL("test.sink", rktest::Sink);
RK_KERNEL("test.puller", rktest::Puller);
RK_KERNEL("test.pusher", rktest::Pusher);
RK_KERNEL("test.clock", rktest::Clock);
RK_KERNEL("test.self_stop", rktest::SelfStop);
RK_KERNEL("test.big_eater", rktest::BigEater);
RK_KERNEL("test.publisher", rktest::Publisher);
RK_KERNEL("test.topic_sink", rktest::TopicSink);
RK_KERNEL("test.pool", rktest::PoolCounter);
