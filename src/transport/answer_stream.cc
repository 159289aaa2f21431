// AnswerStream (transport/http_server.h): the queue between a producer and the connection that
// writes a streamed answer.
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "transport/http_server.h"
#include "transport/http_server_internal.h"

namespace hivemesh {

struct AnswerStream::State {
  explicit State(size_t max) : max_queued(max) {}
  const size_t max_queued;
  mutable absl::Mutex mu;
  std::string queued ABSL_GUARDED_BY(mu);  // framed as chunks
  bool ended ABSL_GUARDED_BY(mu) = false;
  bool closed ABSL_GUARDED_BY(mu) = false;
  bool wake_pending ABSL_GUARDED_BY(mu) = false;  // `wake` called, Take not yet
  std::function<void()> wake ABSL_GUARDED_BY(mu);
  std::function<void()> on_close ABSL_GUARDED_BY(mu);

  // Under mu: the waker to call (outside mu) if the connection is not woken yet.
  std::function<void()> WakeOnce() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (wake_pending || !wake) return nullptr;
    wake_pending = true;
    return wake;
  }
};

AnswerStream::AnswerStream(size_t max_queued_bytes)
    : state_(std::make_unique<State>(max_queued_bytes)) {}

// A stream the server never wrote (its answer went nowhere) still tells its producer.
AnswerStream::~AnswerStream() { Close(); }

bool AnswerStream::Push(std::string_view piece) {
  if (piece.empty()) return true;  // an empty chunk would end the body
  std::function<void()> wake;
  {
    absl::MutexLock lock(&state_->mu);
    if (state_->closed || state_->ended) return false;
    if (state_->queued.size() + piece.size() > state_->max_queued) return false;
    http_internal::AppendChunk(&state_->queued, piece);
    wake = state_->WakeOnce();
  }
  if (wake) wake();
  return true;
}

void AnswerStream::End() {
  std::function<void()> wake;
  {
    absl::MutexLock lock(&state_->mu);
    if (state_->closed || state_->ended) return;
    state_->ended = true;
    wake = state_->WakeOnce();
  }
  if (wake) wake();
}

bool AnswerStream::closed() const {
  absl::MutexLock lock(&state_->mu);
  return state_->closed;
}

size_t AnswerStream::queued_bytes() const {
  absl::MutexLock lock(&state_->mu);
  return state_->queued.size();
}

void AnswerStream::SetOnClose(std::function<void()> on_close) {
  {
    absl::MutexLock lock(&state_->mu);
    if (!state_->closed) {
      state_->on_close = std::move(on_close);
      return;
    }
  }
  if (on_close) on_close();
}

void AnswerStream::Attach(std::function<void()> wake) {
  bool now = false;
  {
    absl::MutexLock lock(&state_->mu);
    state_->wake = wake;
    now = !state_->queued.empty() || state_->ended;
    state_->wake_pending = now;
  }
  if (now) wake();
}

bool AnswerStream::Take(std::string* out) {
  absl::MutexLock lock(&state_->mu);
  out->clear();  // its capacity goes to the queue
  out->swap(state_->queued);
  state_->wake_pending = false;
  return state_->ended;
}

void AnswerStream::Close() {
  std::function<void()> on_close;
  {
    absl::MutexLock lock(&state_->mu);
    if (state_->closed) return;
    state_->closed = true;
    state_->wake = nullptr;
    state_->queued.clear();
    on_close = std::move(state_->on_close);
  }
  if (on_close) on_close();
}

}  // namespace hivemesh
