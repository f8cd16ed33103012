// SPDX-License-Identifier: MIT
#pragma once
/// @file dmabridge.hpp
/// Everything in dmabridge's public API, for programs that prefer one include.
///
/// The headers live in one folder per layer, and a layer includes only the layers below it
/// (`ci/check-layers` keeps it so):
///
///     bridge/                        what joins layers below: V4L2 capture served through the queue,
///                                    and a camera converted on Vulkan or GL (camera pipelines)
///     vulkan/ egl/ kms/ | v4l2/ queue/ wayland/   API adapters | transports (none includes another)
///     alloc/ cache/                  exporters of memory | the import cache's keys
///     format/                        fourccs, layouts, format sets, the buffer description
///     kernel/                        dma-buf, sync_file, syncobj timelines, CPU access, the fence
///                                    watcher, devices
///     base/                          results and errors, logging, owned fds
///
/// The Wayland client is an optional component with its own library (CMake target
/// `dmabridge::wayland`): include <dmabridge/wayland/display.hpp> and
/// <dmabridge/wayland/surface.hpp> where you link it; they are not included here.

#include <dmabridge/version.hpp>

#include <dmabridge/base/access.hpp>
#include <dmabridge/base/log.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/base/unique_fd.hpp>

#include <dmabridge/kernel/completion.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/kernel/devices.hpp>
#include <dmabridge/kernel/dmabuf.hpp>
#include <dmabridge/kernel/fence_watcher.hpp>
#include <dmabridge/kernel/sync_file.hpp>
#include <dmabridge/kernel/timeline.hpp>

#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/format/buffer_fences.hpp>
#include <dmabridge/format/format.hpp>
#include <dmabridge/format/format_set.hpp>
#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/format/frame_layout.hpp>
#include <dmabridge/format/texel_view.hpp>

#include <dmabridge/alloc/allocator.hpp>
#include <dmabridge/alloc/dma_heap.hpp>
#include <dmabridge/alloc/gbm_allocator.hpp>
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/cache/import_key.hpp>

#include <dmabridge/egl/context.hpp>
#include <dmabridge/egl/frame_converter.hpp>
#include <dmabridge/egl/import_cache.hpp>
#include <dmabridge/egl/sync_bridge.hpp>
#include <dmabridge/kms/commit.hpp>
#include <dmabridge/kms/device.hpp>
#include <dmabridge/kms/framebuffer_cache.hpp>
#include <dmabridge/kms/output.hpp>
#include <dmabridge/vulkan/context.hpp>
#include <dmabridge/vulkan/device.hpp>
#include <dmabridge/vulkan/format.hpp>
#include <dmabridge/vulkan/frame_converter.hpp>
#include <dmabridge/vulkan/host_buffer.hpp>
#include <dmabridge/vulkan/import_cache.hpp>
#include <dmabridge/vulkan/resources.hpp>
#include <dmabridge/vulkan/storage_image.hpp>
#include <dmabridge/vulkan/sync_bridge.hpp>

#include <dmabridge/queue/connection.hpp>
#include <dmabridge/queue/consumer.hpp>
#include <dmabridge/queue/producer.hpp>
#include <dmabridge/v4l2/buffer_ring.hpp>
#include <dmabridge/v4l2/device.hpp>

#include <dmabridge/bridge/camera_pipeline.hpp>
#include <dmabridge/bridge/capture_source.hpp>
#include <dmabridge/bridge/gl_camera_pipeline.hpp>
