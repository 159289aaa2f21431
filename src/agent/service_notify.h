// ServiceNotifier: what the node tells its service manager (systemd's notify protocol, through
// libsystemd's sd_notify; docs/deploy.md), when it runs under one (NOTIFY_SOCKET set; nothing is
// sent otherwise):
//
// - READY=1 once the node serves and has joined its mesh (a node given seeds waits for the
//   first of them to answer), with STATUS= saying so: a unit with Type=notify is started then,
//   and units ordered after it find a node that answers;
// - WATCHDOG=1 at half the unit's WatchdogSec (WATCHDOG_USEC), each ping sent only after every
//   I/O loop of the node has run a task: a node whose loops hang stops pinging, and the manager
//   restarts it;
// - RELOADING=1 (with MONOTONIC_USEC) while a SIGHUP's configuration is applied, READY=1 after;
// - STOPPING=1 when the node begins to drain.
//
// Thread safety: the methods are called from the agent's main thread; the notifier's own thread
// waits for readiness and pings the watchdog.
#pragma once

#include <functional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace hivemesh {

class ServiceNotifier {
 public:
  // `ready`: true once the node serves and has joined; `alive`: returns once every I/O loop has
  // run a task (it blocks while one hangs); `status`: a line for STATUS=.
  ServiceNotifier(std::function<bool()> ready, std::function<void()> alive,
                  std::function<std::string()> status);
  ~ServiceNotifier();  // stops the thread
  ServiceNotifier(const ServiceNotifier&) = delete;
  ServiceNotifier& operator=(const ServiceNotifier&) = delete;

  void Reloading();
  void Reloaded();
  void Stopping();

  // True when a service manager listens (NOTIFY_SOCKET is set).
  static bool Managed();

 private:
  void Run();

  const std::function<bool()> ready_;
  const std::function<void()> alive_;
  const std::function<std::string()> status_;
  absl::Mutex mu_;
  absl::CondVar cv_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace hivemesh
