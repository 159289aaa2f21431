#include "agent/service_notify.h"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include <cstdlib>

#include "base/strings.h"

namespace hivemesh {
namespace {

void Notify(const std::string& message) {
  const int rc = sd_notify(0, message.c_str());
  if (rc < 0) spdlog::warn("service manager: sd_notify failed ({})", rc);
}

uint64_t MonotonicUsec() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

}  // namespace

bool ServiceNotifier::Managed() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  return socket != nullptr && socket[0] != '\0';
}

ServiceNotifier::ServiceNotifier(std::function<bool()> ready, std::function<void()> alive,
                                 std::function<std::string()> status)
    : ready_(std::move(ready)), alive_(std::move(alive)), status_(std::move(status)) {
  if (Managed()) thread_ = std::thread([this] { Run(); });
}

ServiceNotifier::~ServiceNotifier() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    cv_.Signal();
  }
  if (thread_.joinable()) thread_.join();
}

void ServiceNotifier::Run() {
  uint64_t watchdog_usec = 0;
  if (sd_watchdog_enabled(0, &watchdog_usec) <= 0) watchdog_usec = 0;
  bool told_ready = false;
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    if (!told_ready) {
      mu_.Unlock();
      const bool now_ready = ready_();
      if (now_ready) Notify(StrCat("READY=1\nSTATUS=", status_()));
      mu_.Lock();
      told_ready = now_ready;
    }
    if (watchdog_usec > 0) {
      mu_.Unlock();
      alive_();  // blocks while a loop hangs: no ping then
      Notify("WATCHDOG=1");
      mu_.Lock();
    }
    // Readiness is looked at every 100 ms; the watchdog is pinged at half its period.
    absl::Duration wait = absl::Milliseconds(100);
    if (told_ready) {
      wait = watchdog_usec > 0 ? absl::Microseconds(static_cast<int64_t>(watchdog_usec / 2))
                               : absl::InfiniteDuration();
    }
    cv_.WaitWithTimeout(&mu_, wait);
  }
}

void ServiceNotifier::Reloading() {
  if (Managed()) Notify(StrCat("RELOADING=1\nMONOTONIC_USEC=", MonotonicUsec()));
}

void ServiceNotifier::Reloaded() {
  if (Managed()) Notify(StrCat("READY=1\nSTATUS=", status_()));
}

void ServiceNotifier::Stopping() {
  if (Managed()) Notify("STOPPING=1\nSTATUS=draining: answering every accepted request");
}

}  // namespace hivemesh
