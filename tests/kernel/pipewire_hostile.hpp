// SPDX-License-Identifier: MIT
#pragma once
// A hostile PipeWire producer for the pipewire tests: a raw pw_stream (libpipewire, not
// dmabridge's Producer, which never sends such buffers) that publishes a Video/Source node and
// describes its buffers falsely, so that the tests can check that a dmabridge Consumer refuses
// every one of them before it imports or maps anything.
//
// Kinds (pipewire_peer hostile KIND NAME WIDTH HEIGHT):
//   dmabuf-memfd    SPA_DATA_DmaBuf whose fd is a sealed memfd of the right size
//   dmabuf-pipe     SPA_DATA_DmaBuf whose fd is a pipe
//   dmabuf-layout   real dma-bufs whose chunks lie: per frame in turn an offset past the end, a
//                   stride shorter than a row, a stride of INT32_MAX, an offset 4 KiB before
//                   the end (the rows run out) and a stride of 0
//   memfd-pipe      SPA_DATA_MemFd whose fd is a pipe
//   memfd-short     a sealed memfd smaller than the maxsize the buffer claims
//   memfd-shrink    unsealed memfds with right frames, all truncated to 0 bytes on SIGUSR1
//   syncobj-memfd   explicit sync only (SyncTimeline metadata and two SyncObj datas), real
//                   dma-bufs with right frames, but memfds where the syncobjs belong
//   syncobj-points  explicit sync only with real timelines, and points per frame in turn 0 for
//                   acquire, 0 for release, then (1, 1): accepted once per buffer, refused after
// Frames carry the test pattern (pipewire_pattern.hpp) where there is memory to write it. The
// process runs until killed, or 60 s.

#include <string>

namespace dmabridge::test {

/// Runs the hostile producer `kind` as node `name`; returns the exit code (2: a setup failure,
/// with the reason on stderr; unknown kinds included).
int run_hostile_producer(const std::string& kind, const std::string& name, unsigned width, unsigned height);

}  // namespace dmabridge::test
