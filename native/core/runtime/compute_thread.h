// The compute thread: every libtorch computation of the library runs on it, in submission order.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

namespace torchlm {

// Every libtorch computation runs on this one thread. OpenMP keeps a team of threads per calling thread,
// so libuv's four pool threads would each grow a team and oversubscribe the cores; one compute thread
// keeps one team, and also runs calls in submission order.
class ComputeThread {
 public:
  static ComputeThread& Get() {
    static ComputeThread* t = new ComputeThread();  // never destroyed: it may be running at exit
    return *t;
  }
  // Runs fn on the compute thread and waits for it (from any other thread).
  void RunAndWait(const std::function<void()>& fn) {
    std::packaged_task<void()> task(fn);
    auto done = task.get_future();
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(task));
    }
    cv_.notify_one();
    done.get();  // rethrows what fn threw
  }
  // Queues fn and returns at once (fn must catch what it throws: nothing waits for it).
  void Post(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::packaged_task<void()>(std::move(fn)));
    }
    cv_.notify_one();
  }

 private:
  ComputeThread() : thread_([this] { Loop(); }) { thread_.detach(); }
  void Loop() {
    for (;;) {
      std::packaged_task<void()> task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return !queue_.empty(); });
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::packaged_task<void()>> queue_;
  std::thread thread_;
};

}  // namespace torchlm
