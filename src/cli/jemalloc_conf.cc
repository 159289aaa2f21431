// jemalloc's options for the hivemesh process, read by jemalloc when it starts (it is linked in
// release builds only; src/cli/CMakeLists.txt).
//
// background_thread: a thread of jemalloc's own returns freed pages to the system once they have
// been unused for dirty_decay_ms (10 s by default), whether or not the node allocates meanwhile.
// Without it decay advances only inside allocations, so a node left idle after a burst of large
// requests (or an attack its memory budget refused) keeps what it freed: 10 s after 40 refused
// 60 MB bodies, a node held 59 MiB over its start without the thread and 28 MiB with it
// (bench/hostile, `uploads`).
extern "C" {
const char* malloc_conf = "background_thread:true";
}
