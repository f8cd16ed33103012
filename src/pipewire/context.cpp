// SPDX-License-Identifier: MIT
#include <dmabridge/pipewire/context.hpp>

#include <cerrno>
#include <climits>
#include <mutex>
#include <string>

#include "pipewire/context_state.hpp"

namespace dmabridge::pipewire {

namespace detail {

ContextState::~ContextState() {
    if (core != nullptr) {
        spa_hook_remove(&core_listener);
        pw_core_disconnect(core);
    }
    if (context != nullptr) pw_context_destroy(context);
    if (loop != nullptr) pw_loop_destroy(loop);
}

void init_pipewire() {
    static std::once_flag once;
    std::call_once(once, [] { pw_init(nullptr, nullptr); });
}

}  // namespace detail

namespace {

void on_core_error(void* data, uint32_t id, int /*seq*/, int res, const char* message) {
    auto* state = static_cast<detail::ContextState*>(data);
    // Errors on other objects (a stream's node, a link) reach their streams' state; the core's
    // own errors are the connection's.
    if (id != PW_ID_CORE) return;
    const std::string text = message ? message : "error on the core";
    if (res == -EPIPE) {
        // The native protocol reports a hang-up of the daemon's socket (the daemon killed or
        // stopped) as -EPIPE on the core and drops the socket from the loop: nothing on this
        // connection will happen again, so the loss is kept as the Context's error for good.
        state->connected = false;
        if (!state->error || !state->error->is_errno(EPIPE))
            state->error = Error::from_errno(EPIPE, "the connection to the PipeWire daemon was lost (" + text +
                                                        "): make a new Context once the daemon runs again");
        return;
    }
    if (!state->error) state->error = Error::from_errno(-res, "PipeWire daemon: " + text);
}

const pw_core_events core_events = [] {
    pw_core_events e{};
    e.version = PW_VERSION_CORE_EVENTS;
    e.error = on_core_error;
    return e;
}();

}  // namespace

Result<Context> Context::create(const ContextOptions& options) {
    detail::init_pipewire();
    auto state = std::make_shared<detail::ContextState>();
    state->loop = pw_loop_new(nullptr);
    if (state->loop == nullptr) return Error::from_errno(errno, "pw_loop_new");
    pw_properties* props = pw_properties_new(PW_KEY_APP_NAME, options.application_name.c_str(), nullptr);
    state->context = pw_context_new(state->loop, props, 0);
    if (state->context == nullptr) return Error::from_errno(errno, "pw_context_new");
    pw_properties* core_props = nullptr;
    if (!options.remote.empty()) core_props = pw_properties_new(PW_KEY_REMOTE_NAME, options.remote.c_str(), nullptr);
    state->core = pw_context_connect(state->context, core_props, 0);
    if (state->core == nullptr)
        return Error::from_errno(errno, "connect to the PipeWire daemon " +
                                            (options.remote.empty() ? std::string("(default remote)") : options.remote));
    state->connected = true;
    pw_core_add_listener(state->core, &state->core_listener, &core_events, state.get());
    return Context(std::move(state));
}

Context::Context(Context&&) noexcept = default;
Context& Context::operator=(Context&&) noexcept = default;
Context::~Context() = default;

int Context::fd() const noexcept { return state_ ? pw_loop_get_fd(state_->loop) : -1; }

bool Context::connected() const noexcept { return state_ && state_->connected; }

Result<int> Context::dispatch(Timeout timeout) {
    if (!state_) return Error::library(Errc::empty_object, "pipewire::Context::dispatch: the context is empty (moved from)");
    if (timeout.count() < 0)
        return Error::library(Errc::invalid_argument,
                              "pipewire::Context::dispatch: a wait without limit is refused; give a timeout");
    const int ms = timeout.count() > INT_MAX ? INT_MAX : static_cast<int>(timeout.count());
    pw_loop_enter(state_->loop);
    const int n = pw_loop_iterate(state_->loop, ms);
    pw_loop_leave(state_->loop);
    if (n < 0 && n != -EINTR) return Error::from_errno(-n, "pipewire::Context::dispatch: pw_loop_iterate");
    if (state_->error) return *state_->error;
    return n < 0 ? 0 : n;
}

}  // namespace dmabridge::pipewire
