// SPDX-License-Identifier: MIT
// A machine without DRM syncobj timelines (Linux 5.10, or any VM without virtio_gpu: vgem has no
// syncobj): every entry point that needs timelines says why it cannot have them, and the way on
// without them (sync_files) works. Suite any_kernel: ci/test runs it on 5.10, 6.12 and 7.x in VMs
// without virtio-gpu, so no device there has timelines.
#include <dmabridge/kernel/timeline.hpp>
#include <dmabridge/queue/connection.hpp>
#include <dmabridge/queue/consumer.hpp>
#include <dmabridge/queue/producer.hpp>

#include <chrono>
#include <string>

#include <fcntl.h>

#include <doctest/doctest.h>

#include <dmabridge/base/unique_fd.hpp>

#include "fd_count.hpp"

using namespace dmabridge;
using namespace std::chrono_literals;
using dmabridge::test::FdLeakCheck;

TEST_SUITE_BEGIN("any_kernel");

TEST_CASE_FIXTURE(FdLeakCheck, "without syncobj timelines every entry point says why, and the queue runs on sync_files") {
    // vgem's render node: a DRM device whose driver has no syncobj at all.
    UniqueFd vgem(::open("/dev/dri/renderD128", O_RDWR | O_CLOEXEC));
    REQUIRE_MESSAGE(vgem.valid(), "no /dev/dri/renderD128 (vgem) in this VM");

    auto supported = Timeline::supported(vgem.get());
    REQUIRE_FALSE(supported);
    CHECK(supported.error().is(Errc::unsupported));
    CHECK_MESSAGE(supported.error().message().find("vgem") != std::string::npos, supported.error().message());
    CHECK_MESSAGE(supported.error().message().find("no syncobj timelines") != std::string::npos,
                  supported.error().message());

    auto created = Timeline::create(vgem.get());
    REQUIRE_FALSE(created);
    CHECK(created.error().is(Errc::unsupported));

    // Discovery looks at every render node and names what each lacks.
    auto found = Timeline::open_device();
    REQUIRE_FALSE(found);
    CHECK(found.error().is(Errc::not_found));
    CHECK_MESSAGE(found.error().message().find("syncobj timelines") != std::string::npos, found.error().message());

    // Asking the queue for timelines on such a device fails at once, saying why...
    queue::ProducerOptions with_timelines;
    with_timelines.timeline_device = vgem.get();
    auto refused = queue::Producer::create(std::move(with_timelines));
    REQUIRE_FALSE(refused);
    CHECK(refused.error().is(Errc::unsupported));
    CHECK_MESSAGE(refused.error().message().find("acquire timeline") != std::string::npos, refused.error().message());
    queue::ConsumerOptions consumer_timelines;
    consumer_timelines.timeline_device = vgem.get();
    {
        auto pair = queue::Connection::local_pair();
        REQUIRE(pair);
        auto consumer = queue::Consumer::create(std::move(pair->second), std::move(consumer_timelines));
        REQUIRE_FALSE(consumer);
        CHECK(consumer.error().is(Errc::unsupported));
    }

    // ...and the way on without them is the default: frames carry sync_files.
    auto producer = queue::Producer::create();
    REQUIRE(producer);
    auto pair = queue::Connection::local_pair();
    REQUIRE(pair);
    REQUIRE(producer->add_consumer(std::move(pair->first)));
    auto consumer = queue::Consumer::create(std::move(pair->second));
    REQUIRE(consumer);
    REQUIRE(consumer->dispatch());
    CHECK_FALSE(consumer->uses_timelines());
    CHECK(producer->acquire_timeline() == nullptr);
}

TEST_SUITE_END();
