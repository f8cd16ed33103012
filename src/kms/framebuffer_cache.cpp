// SPDX-License-Identifier: MIT
// kms::FramebufferCache on the shared import cache core: the key is the image key of the
// description (no API format or usage: a framebuffer has neither), the object a Framebuffer.
// No completion is recorded per use: the Device itself keeps what the display shows (see
// device_state.hpp), so a retired framebuffer is let go as soon as no handle holds it.
#include <dmabridge/kms/framebuffer_cache.hpp>

#include "cache/import_cache_core.hpp"
#include "kms/device_state.hpp"

namespace dmabridge::kms {

namespace {

// A framebuffer needs no Vulkan format nor usage: both key fields stay 0.
ImportKey key_of(const BufferDesc& desc) { return ::dmabridge::detail::image_key(desc, 0, 0); }

}  // namespace

FramebufferCache::FramebufferCache(const Device& device, FramebufferCacheOptions options)
    : device_(device.state_),
      // Nothing is waited for on destruction (no uses are recorded), so no timeout matters.
      core_(std::make_unique<::dmabridge::detail::ImportCacheCore>(options.max_entries, "kms framebuffer cache",
                                                                    Timeout{0})) {}

FramebufferCache::~FramebufferCache() = default;

Result<CachedFramebuffer> FramebufferCache::get(const BufferDesc& desc) {
    if (auto ok = ::dmabridge::detail::check_lookup(desc, "kms framebuffer cache"); !ok) return ok.error();
    if (!device_)
        return Error::library(Errc::empty_object, "kms framebuffer cache: made from an empty kms::Device (moved from)");
    const ImportKey key = key_of(desc);
    if (auto hit = core_->find(key)) return std::static_pointer_cast<const Framebuffer>(hit);
    auto fb = Device::make_framebuffer(device_, desc);
    if (!fb) return fb.error();
    auto refs = desc.dup();
    if (!refs) return refs.error().with_context("kms framebuffer cache: keep references");
    auto object = std::make_shared<Framebuffer>(std::move(*fb));
    return std::static_pointer_cast<const Framebuffer>(core_->insert(key, std::move(object), 0, std::move(*refs)));
}

bool FramebufferCache::evict(const BufferDesc& desc) {
    if (!::dmabridge::detail::check_lookup(desc, "kms framebuffer cache evict")) return false;
    return core_->evict(key_of(desc));
}
std::size_t FramebufferCache::evict_buffer(BufferId id) { return core_->evict_buffer(id); }
void FramebufferCache::clear() { core_->clear(); }
std::size_t FramebufferCache::collect() { return core_->collect(); }
ImportCacheStats FramebufferCache::stats() const { return core_->stats(); }

}  // namespace dmabridge::kms
