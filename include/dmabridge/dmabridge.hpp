// SPDX-License-Identifier: MIT
#pragma once
/// @file dmabridge.hpp
/// Everything in dmabridge's public API, for programs that prefer one include.

#include <dmabridge/access.hpp>
#include <dmabridge/allocator.hpp>
#include <dmabridge/buffer_desc.hpp>
#include <dmabridge/completion.hpp>
#include <dmabridge/cpu_access.hpp>
#include <dmabridge/devices.hpp>
#include <dmabridge/dma_heap.hpp>
#include <dmabridge/dmabuf.hpp>
#include <dmabridge/fence_watcher.hpp>
#include <dmabridge/format.hpp>
#include <dmabridge/fourcc.hpp>
#include <dmabridge/gbm_allocator.hpp>
#include <dmabridge/import_key.hpp>
#include <dmabridge/log.hpp>
#include <dmabridge/queue/connection.hpp>
#include <dmabridge/queue/consumer.hpp>
#include <dmabridge/queue/producer.hpp>
#include <dmabridge/result.hpp>
#include <dmabridge/sync_file.hpp>
#include <dmabridge/udmabuf.hpp>
#include <dmabridge/unique_fd.hpp>
#include <dmabridge/v4l2/buffer_ring.hpp>
#include <dmabridge/v4l2/device.hpp>
#include <dmabridge/version.hpp>
