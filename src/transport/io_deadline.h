// IoDeadline: the timeout of a connection's current read or write, cheap enough to move on every
// operation. For .cc files only (Asio inside; public headers stay free of it).
//
// Moving the deadline only stores a time. The timer underneath is re-armed when it fires before
// the deadline (about once per timeout period on a busy connection) or when the deadline moves
// earlier than the time it is armed for. A per-operation Asio timer would instead cancel and
// re-arm the timer on every read and write: a timerfd_settime system call and a cancelled
// handler each time, a large share of a mesh hop's cost at low load.
//
// Time: deadlines are times of `clock`. The timer underneath runs on real time: armed for what
// is left by `clock`, it fires after that much real time and looks at `clock` again, so on a
// ManualClock the deadline passes at the first such look after the clock has passed it.
//
// Thread safety: none; use it from the executor (one loop thread) its owner runs on.
#pragma once

#include <algorithm>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <utility>

#include "base/clock.h"

namespace hivemesh {

class IoDeadline {
 public:
  // `clock` must outlive this object.
  IoDeadline(const boost::asio::any_io_executor& executor, const Clock& clock)
      : clock_(clock), timer_(executor) {}

  // From now on, `expire()` runs (on the executor) once `timeout` has passed, unless the deadline
  // is moved or cleared first. When the timer must be armed, `make_keep()` gives what the pending
  // timer handler holds (e.g. a shared_ptr to the owner), so that the owner, and this object in
  // it, outlive the handler; it is not called otherwise.
  template <class MakeKeep, class Expire>
  void ExpiresAfter(SteadyTime::duration timeout, const MakeKeep& make_keep, const Expire& expire) {
    ExpiresAt(clock_.Now() + timeout, make_keep, expire);
  }

  // The same with the time given: `expire()` runs once `deadline` has passed.
  template <class MakeKeep, class Expire>
  void ExpiresAt(SteadyTime deadline, const MakeKeep& make_keep, const Expire& expire) {
    deadline_ = deadline;
    if (waiting_ && armed_ <= deadline_) return;  // it fires first and looks again
    Arm(make_keep(), expire);
  }

  // No deadline (the timer, if pending, fires later and does nothing).
  void Clear() { deadline_ = SteadyTime::max(); }

  // No deadline, and the pending timer handler (with its `keep`) is released now.
  void Cancel() {
    Clear();
    waiting_ = false;
    timer_.cancel();
  }

 private:
  template <class Keep, class Expire>
  void Arm(const Keep& keep, const Expire& expire) {
    armed_ = deadline_;
    waiting_ = true;
    // A pending wait, if any, ends with operation_aborted.
    timer_.expires_after(std::max(armed_ - clock_.Now(), SteadyTime::duration::zero()));
    timer_.async_wait([this, keep, expire](const boost::system::error_code& ec) {
      if (ec) return;  // re-armed or cancelled: a newer wait owns the state
      waiting_ = false;
      if (deadline_ == SteadyTime::max()) return;
      if (clock_.Now() >= deadline_) {
        deadline_ = SteadyTime::max();
        expire();
        return;
      }
      Arm(keep, expire);
    });
  }

  const Clock& clock_;
  boost::asio::steady_timer timer_;
  SteadyTime deadline_ = SteadyTime::max();
  SteadyTime armed_ = SteadyTime::max();
  bool waiting_ = false;
};

}  // namespace hivemesh
