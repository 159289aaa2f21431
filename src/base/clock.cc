#include "base/clock.h"

namespace hivemesh {

SystemClock& SystemClock::Get() {
  static SystemClock clock;
  return clock;
}

}  // namespace hivemesh
