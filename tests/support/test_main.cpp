// SPDX-License-Identifier: MIT
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>

// A watchdog over every test binary: a test case (one pass through it, subcases re-enter) that runs
// longer than DMABRIDGE_TEST_CASE_TIMEOUT seconds (default 900; 0 turns it off) is named on stderr
// and ends the process. A wait that never ends (a fence nobody signals, a flip that never comes, a
// peer that never answers) then fails as that test, with its name, in seconds instead of reaching
// the VM's timeout, which can only say that the guest hung.
namespace {

// What the watchdog thread reads: never destroyed, since the detached thread outlives doctest's
// reporter objects (deleted when the run ends, before the process exits).
struct WatchState {
    std::once_flag thread_started;
    std::mutex mutex;
    std::string name;
    std::atomic<long long> started_ns{0};
    std::atomic<bool> running{false};
};

WatchState& watch_state() {
    static WatchState* const state = new WatchState;
    return *state;
}

class Watchdog final : public doctest::IReporter {
public:
    explicit Watchdog(const doctest::ContextOptions&) {}

    void test_case_start(const doctest::TestCaseData& data) override { arm(data); }
    void test_case_reenter(const doctest::TestCaseData& data) override { arm(data); }
    void test_case_end(const doctest::CurrentTestCaseStats&) override { watch_state().running.store(false); }

    void report_query(const doctest::QueryData&) override {}
    void test_run_start() override {}
    void test_run_end(const doctest::TestRunStats&) override {}
    void test_case_exception(const doctest::TestCaseException&) override {}
    void subcase_start(const doctest::SubcaseSignature&) override {}
    void subcase_end() override {}
    void log_assert(const doctest::AssertData&) override {}
    void log_message(const doctest::MessageData&) override {}
    void test_case_skipped(const doctest::TestCaseData&) override {}

private:
    static long limit_seconds() {
        const char* text = std::getenv("DMABRIDGE_TEST_CASE_TIMEOUT");
        if (text == nullptr || *text == '\0') return 900;
        char* end = nullptr;
        const long value = std::strtol(text, &end, 10);
        // At most a day: seconds(limit) must not overflow the clock's nanoseconds.
        if (end != nullptr && *end == '\0' && value >= 0) return std::min(value, 86400L);
        std::fprintf(stderr, "[watchdog] DMABRIDGE_TEST_CASE_TIMEOUT=%s is not a number of seconds: using 900\n", text);
        return 900;
    }

    static void arm(const doctest::TestCaseData& data) {
        WatchState& state = watch_state();
        {
            const std::lock_guard lock(state.mutex);
            state.name = std::string(data.m_name) + " (" + data.m_file.c_str() + ":" + std::to_string(data.m_line) + ")";
        }
        state.started_ns.store(std::chrono::steady_clock::now().time_since_epoch().count());
        state.running.store(true);
        std::call_once(state.thread_started, [] {
            const long limit = limit_seconds();
            if (limit == 0) return;
            // Detached: it sleeps between checks and ends with the process.
            std::thread([limit] { watch(limit); }).detach();
        });
    }

    [[noreturn]] static void watch(long limit) {
        WatchState& state = watch_state();
        for (;;) {
            std::this_thread::sleep_for(std::chrono::seconds(1));
            if (!state.running.load()) continue;
            const auto started = std::chrono::steady_clock::time_point(
                std::chrono::steady_clock::duration(state.started_ns.load()));
            if (std::chrono::steady_clock::now() - started < std::chrono::seconds(limit)) continue;
            std::string message;
            {
                const std::lock_guard lock(state.mutex);
                message = "\n[watchdog] test case still running after " + std::to_string(limit) +
                          " s (DMABRIDGE_TEST_CASE_TIMEOUT), ending the run: " + state.name + "\n";
            }
            // write(2): the test thread may hold stdio's lock in the wait that hangs.
            [[maybe_unused]] const ssize_t ignored = ::write(STDERR_FILENO, message.data(), message.size());
            std::_Exit(70);
        }
    }
};

REGISTER_LISTENER("dmabridge_watchdog", 1, Watchdog);

// doctest writes to std::cout without flushing; in the VM stdout is a file, fully buffered, and
// the watchdog's _Exit would drop what is still in the buffer (the hung test's own messages).
// Line buffering keeps every finished line.
const bool stdout_line_buffered = [] {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    std::cout.setf(std::ios::unitbuf);
    return true;
}();

}  // namespace
