// pidfd_thread_signal_scope: pidfds for threads (PIDFD_THREAD, 6.9) and the
// scope of pidfd_send_signal: a thread pidfd signals that thread, unless
// PIDFD_SIGNAL_THREAD_GROUP asks for the whole process; PIDFD_SIGNAL_THREAD
// on a process pidfd signals its leader thread.
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>

#include "kpc/pidfd.h"
#include "kpc/probe.h"

namespace {
using namespace kpc::pidfd;

std::atomic<int> g_main_handled{0};
void on_usr1(int) { g_main_handled.fetch_add(1); }
}  // namespace

int probe_main(kpc::Probe&) {
  // 1. The main thread catches SIGUSR1; a worker thread blocks it, reports
  //    its TID, then answers "was SIGUSR1 pending for me?" on request.
  kpc::ScopedSigaction usr1(SIGUSR1, on_usr1, 0);
  kpc::Pipe tid_pipe = kpc::Pipe::make(O_CLOEXEC), ask = kpc::Pipe::make(O_CLOEXEC),
            answer = kpc::Pipe::make(O_CLOEXEC);
  // pthread_create, not std::thread: a static binary of glibc < 2.34 (Debian
  // 11) links libpthread only for strong references, and std::thread's are
  // weak (it crashed with SIGSEGV there).
  auto body = [&] {
    sigset_t usr1_set;
    sigemptyset(&usr1_set);
    sigaddset(&usr1_set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1_set, nullptr);
    kpc::send_int(tid_pipe.write.get(), static_cast<int>(syscall(SYS_gettid)));
    // 'c' = check and consume a pending SIGUSR1, 'q' = exit.
    while (auto c = kpc::recv_byte(ask.read.get(), 10000)) {
      if (*c != 'c') break;
      timespec zero{};
      kpc::send_int(answer.write.get(), sigtimedwait(&usr1_set, nullptr, &zero) == SIGUSR1 ? 1 : 0);
    }
  };
  pthread_t worker;
  KPC_CHECK(pthread_create(
                &worker, nullptr,
                [](void* b) -> void* {
                  (*static_cast<decltype(body)*>(b))();
                  return nullptr;
                },
                &body) == 0);
  auto tid = kpc::recv_int(tid_pipe.read.get(), 5000);
  KPC_CHECK(tid.has_value());

  // Where did a SIGUSR1 just sent go? Our handler runs before the syscall
  // returns if it was for the process (we are the one thread not blocking
  // it); if it was for the worker, it waits there, pending.
  auto where = [&](int handled_before) {
    kpc::send_byte(ask.write.get(), 'c');
    auto worker_had = kpc::recv_int(answer.read.get(), 5000);
    const bool main_got = g_main_handled.load() > handled_before;
    if (main_got && worker_had == 0) return std::string("process");
    if (!main_got && worker_had == 1) return std::string("thread");
    return std::string("main=") + (main_got ? "1" : "0") +
           " worker=" + (worker_had ? std::to_string(*worker_had) : "?");
  };

  // 2. A non-leader TID is not a process: pidfd_open without PIDFD_THREAD refuses it.
  long f = syscall(kSysOpen, *tid, 0);
  kpc::observe("pidfd_open.non_leader_tid", result(f));
  if (f >= 0) close(static_cast<int>(f));

  // 3. With PIDFD_THREAD (6.9) it is a pidfd for that thread.
  long t = syscall(kSysOpen, *tid, kThread);
  kpc::observe("pidfd_open.thread_pidfd", result(t));
  if (t >= 0) {
    kpc::Fd tfd(static_cast<int>(t));
    // 4. Default scope of a thread pidfd: the thread.
    int before = g_main_handled.load();
    long r = syscall(kSysSendSignal, tfd.get(), SIGUSR1, nullptr, 0);
    kpc::observe("thread_pidfd.send_signal", result(r));
    if (r == 0) kpc::observe("thread_pidfd.default_target", where(before));
    // 5. PIDFD_SIGNAL_THREAD_GROUP widens it to the process.
    before = g_main_handled.load();
    r = syscall(kSysSendSignal, tfd.get(), SIGUSR1, nullptr, kSignalThreadGroup);
    kpc::observe("thread_pidfd.send_signal_thread_group", result(r));
    if (r == 0) kpc::observe("thread_pidfd.thread_group_target", where(before));
    // 6. The worker exits: its thread pidfd becomes readable. POLLHUP comes
    //    once the thread is released, a moment later (seen both ways at the
    //    first poll on 7.2), so it is waited for separately, 2 s at most.
    kpc::send_byte(ask.write.get(), 'q');
    pollfd p{tfd.get(), POLLIN, 0};
    kpc::observe("thread_pidfd.readable_after_thread_exit", poll(&p, 1, 5000) == 1 && (p.revents & POLLIN));
    bool hup = false;
    for (int ms = 0; ms < 2000 && !hup; ms += 10) {
      hup = poll(&p, 1, 0) == 1 && (p.revents & POLLHUP);
      if (!hup) usleep(10000);
    }
    kpc::observe("thread_pidfd.pollhup_after_release", hup);
  } else {
    kpc::send_byte(ask.write.get(), 'q');
  }
  pthread_join(worker, nullptr);

  // 7. PIDFD_SIGNAL_THREAD on a process pidfd (our own): the leader thread.
  long self = syscall(kSysOpen, getpid(), 0);
  KPC_CHECK(self >= 0);
  kpc::Fd sfd(static_cast<int>(self));
  const int before = g_main_handled.load();
  long r = syscall(kSysSendSignal, sfd.get(), SIGUSR1, nullptr, kSignalThread);
  kpc::observe("process_pidfd.send_signal_thread", result(r));
  if (r == 0) kpc::observe("process_pidfd.thread_flag_reached_leader", g_main_handled.load() > before);
  return 0;
}
