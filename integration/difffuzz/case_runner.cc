#include "integration/difffuzz/case_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "integration/difffuzz/known_differences.h"
#include "integration/difffuzz/ops.h"
#include "integration/difffuzz/overlay_mounts.h"
#include "integration/difffuzz/stack_builder.h"
#include "integration/difffuzz/stack_generator.h"
#include "integration/difffuzz/view_walker.h"
#include "integration/harness/layer_digest.h"
#include "integration/harness/mount_harness.h"

namespace lamina::difffuzz {
namespace {

using Status = CaseResult::Status;
using testing::LayerDigest;

// The layers' and the outside directory's digests, to check at the end.
struct Watched {
  std::string root;
  LayerDigest digest;
};

// The stages of one case, run in the child process. Each returns false
// once the case has its result.
class CaseBody {
 public:
  CaseBody(const CaseSpec& spec, const std::string& dir, int progress_fd,
           const std::string& stall_at)
      : spec_(spec),
        lamina_set_(dir + "/lamina"),
        kernel_set_(dir + "/kernel"),
        lamina_mnt_(dir + "/lamina-mnt"),
        kernel_mnt_(dir + "/kernel-mnt"),
        progress_fd_(progress_fd),
        stall_at_(stall_at) {
    mkdir(lamina_mnt_.c_str(), 0755);
    mkdir(kernel_mnt_.c_str(), 0755);
    probes_ = PathsNamed(spec_);
  }

  CaseResult Run() {
    Build();
    if (Mount() && CompareViews("view") && Operate() && Remount() && CheckLowers() &&
        LaminaOnKernelLayers() && KernelOnLaminaLayers()) {
      CheckOutside();
    }
    return result_;
  }

 private:
  void Stage(const std::string& name) {
    stage_ = name;
    std::string line = "P " + name + "\n";
    if (write(progress_fd_, line.data(), line.size()) < 0) _exit(3);
    if (!stall_at_.empty() && name.compare(0, stall_at_.size(), stall_at_) == 0) {
      for (;;) pause();
    }
  }

  bool Fail(Status status, const std::string& detail) {
    result_.status = status;
    result_.stage = stage_;
    result_.detail = detail;
    return false;
  }

  void Build() {
    Stage("build");
    BuildStack(spec_, lamina_set_);
    BuildStack(spec_, kernel_set_);
    TranslateForKernel(spec_.options, kernel_set_);
    for (const StackDirs* set : {&lamina_set_, &kernel_set_}) {
      for (const std::string& lower : set->Lowers(spec_.options)) {
        lowers_.push_back({lower, LayerDigest::Take(lower)});
      }
      outside_.push_back({set->outside(), LayerDigest::Take(set->outside())});
    }
  }

  // This process's descriptors and what they are open on.
  static std::map<int, std::string> OpenDescriptors() {
    std::map<int, std::string> fds;
    for (const std::string& name : testing::ListDir("/proc/self/fd")) {
      char target[4096];
      ssize_t n = readlink(("/proc/self/fd/" + name).c_str(), target, sizeof(target));
      fds[std::atoi(name.c_str())] = n > 0 ? std::string(target, static_cast<size_t>(n)) : "?";
    }
    return fds;
  }

  std::unique_ptr<LaminaOverlay> MountLamina(const StackDirs& set, std::string* error) {
    fds_before_ = OpenDescriptors();
    return LaminaOverlay::Mount(spec_.options, set, lamina_mnt_, error);
  }

  // Unmounts Lamina; its descriptors must all be gone.
  bool UnmountLamina() {
    lamina_.reset();
    const std::map<int, std::string> after = OpenDescriptors();
    if (after.size() != fds_before_.size()) {
      std::string left;
      for (const auto& [fd, target] : after) {
        if (!fds_before_.contains(fd)) left += "\n  fd " + std::to_string(fd) + " -> " + target;
      }
      return Fail(Status::kBroken, "Lamina's process held " + std::to_string(fds_before_.size()) +
                                       " descriptors before the mount and " +
                                       std::to_string(after.size()) + " after the unmount:" + left);
    }
    return true;
  }

  bool Mount() {
    Stage("mount");
    std::string kernel_error, lamina_error;
    kernel_ = KernelOverlay::Mount(spec_.options, kernel_set_, kernel_mnt_, &kernel_error);
    lamina_ = MountLamina(lamina_set_, &lamina_error);
    if (kernel_ != nullptr && lamina_ != nullptr) return true;
    if (kernel_ == nullptr && lamina_ == nullptr) {
      result_.status = Status::kBothRefused;
      result_.stage = stage_;
      result_.detail = "kernel: " + kernel_error + "\nlamina: " + lamina_error;
      return false;
    }
    if (kernel_ == nullptr) {
      UnmountLamina();
      if (result_.status != Status::kSame) return false;
      result_.status = Status::kSkipped;
      result_.stage = stage_;
      result_.detail = "kernel refuses: " + kernel_error;
      return false;
    }
    return Fail(Status::kDifferent, "the kernel mounts the stack, Lamina refuses: " + lamina_error);
  }

  bool CompareViews(const std::string& stage) {
    Stage(stage);
    lamina_view_ = DescribeView(lamina_mnt_, probes_);
    kernel_view_ = DescribeView(kernel_mnt_, probes_);
    return Same(lamina_view_, kernel_view_, "lamina", "kernel");
  }

  // Whether the views agree, but for allowed differences.
  bool Same(const View& lamina, const View& kernel, const std::string& lamina_label,
            const std::string& kernel_label) {
    std::string diff = difffuzz::CompareViews(spec_, lamina, kernel, lamina_label, kernel_label,
                                              &result_.allowed, &diverged_);
    if (!diff.empty()) return Fail(Status::kDifferent, diff);
    return true;
  }

  bool Operate() {
    for (size_t i = 0; i < spec_.ops.size(); ++i) {
      const Op& op = spec_.ops[i];
      Stage("op " + std::to_string(i + 1) + ": " + ToText(op));
      const std::string lamina = ApplyOp(lamina_mnt_, op);
      const std::string kernel = ApplyOp(kernel_mnt_, op);
      if (lamina != kernel) {
        // Where the views already disagree (an allowed difference), the
        // outcomes may too; the case ends there.
        result_.known = DivergedEntry(diverged_, op.path);
        if (result_.known.empty() && !op.path2.empty()) {
          result_.known = DivergedEntry(diverged_, op.path2);
        }
        if (result_.known.empty()) result_.known = KnownOutcome(spec_, op, lamina, kernel);
        return Fail(Status::kDifferent, "  lamina: " + lamina + "\n  kernel: " + kernel + "\n");
      }
      if (!CompareViews("view after op " + std::to_string(i + 1) + ": " + ToText(op))) {
        return false;
      }
    }
    return true;
  }

  bool Remount() {
    Stage("unmount");
    kernel_.reset();
    if (!UnmountLamina()) return false;
    Stage("remount");
    std::string kernel_error, lamina_error;
    kernel_ = KernelOverlay::Mount(spec_.options, kernel_set_, kernel_mnt_, &kernel_error);
    lamina_ = MountLamina(lamina_set_, &lamina_error);
    if (lamina_ == nullptr && kernel_ != nullptr) {
      return Fail(Status::kDifferent, "Lamina refuses its own layers: " + lamina_error);
    }
    if (kernel_ == nullptr) {
      if (lamina_ != nullptr && !UnmountLamina()) return false;
      return Fail(Status::kSkipped, "the kernel refuses its own layers: " + kernel_error);
    }
    if (!CompareViews("view after remount")) return false;
    Stage("unmount after remount");
    kernel_.reset();
    return UnmountLamina();
  }

  bool CheckLayers(const std::vector<Watched>& watched, const std::string& what) {
    for (const Watched& w : watched) {
      LayerDigest::Comparison c = LayerDigest::Compare(w.digest, LayerDigest::Take(w.root));
      if (c.count == 0) continue;
      std::string detail = what + " " + w.root + " changed (" + std::to_string(c.count) + "):\n";
      for (const std::string& line : c.listed) detail += "  " + line + "\n";
      return Fail(Status::kBroken, detail);
    }
    return true;
  }

  bool CheckLowers() {
    Stage("lower layers untouched");
    return CheckLayers(lowers_, "lower layer");
  }

  void CheckOutside() {
    Stage("nothing outside the layers touched");
    CheckLayers(outside_, "outside directory");
  }

  // Lamina on the layers the kernel wrote must show what the kernel showed.
  bool LaminaOnKernelLayers() {
    Stage("lamina on kernel's layers");
    const View kernel_view = kernel_view_;
    std::string error;
    lamina_ = MountLamina(kernel_set_, &error);
    if (lamina_ == nullptr) return Fail(Status::kDifferent, "Lamina refuses them: " + error);
    View view = DescribeView(lamina_mnt_, probes_);
    if (!Same(view, kernel_view, "lamina", "kernel (before)")) return false;
    if (!UnmountLamina()) return false;
    return CheckLayers(lowers_, "lower layer");
  }

  // The kernel on the layers Lamina wrote (its Lamina-only forms rewritten)
  // must show what Lamina showed.
  bool KernelOnLaminaLayers() {
    Stage("kernel on lamina's layers");
    TranslateForKernel(spec_.options, lamina_set_);
    std::string error;
    kernel_ = KernelOverlay::Mount(spec_.options, lamina_set_, kernel_mnt_, &error);
    if (kernel_ == nullptr) return Fail(Status::kDifferent, "the kernel refuses them: " + error);
    View view = DescribeView(kernel_mnt_, probes_);
    kernel_.reset();
    return Same(lamina_view_, view, "lamina (before)", "kernel");
  }

  const CaseSpec& spec_;
  StackDirs lamina_set_;
  StackDirs kernel_set_;
  std::string lamina_mnt_;
  std::string kernel_mnt_;
  int progress_fd_;
  std::string stall_at_;
  std::vector<std::string> probes_;
  std::vector<Watched> lowers_;
  std::vector<Watched> outside_;
  std::string stage_;
  CaseResult result_;
  std::unique_ptr<KernelOverlay> kernel_;
  std::unique_ptr<LaminaOverlay> lamina_;
  std::map<int, std::string> fds_before_;
  std::map<std::string, std::string> diverged_;  // of the last comparison
  View lamina_view_;
  View kernel_view_;
};

CaseResult Broken(const std::string& stage, const std::string& detail) {
  CaseResult result;
  result.status = Status::kBroken;
  result.stage = stage;
  result.detail = detail;
  return result;
}

std::string Tail(const std::string& text, size_t lines) {
  size_t at = text.size();
  for (size_t n = 0; n <= lines; ++n) {
    if (at == 0) return text;
    at = text.rfind('\n', at - 1);
    if (at == std::string::npos) return text;
  }
  return text.substr(at + 1);
}

}  // namespace

std::string StatusName(CaseResult::Status status) {
  switch (status) {
    case Status::kSame:
      return "same";
    case Status::kBothRefused:
      return "both-refused";
    case Status::kSkipped:
      return "skipped";
    case Status::kDifferent:
      return "different";
    case Status::kBroken:
      return "broken";
  }
  return "?";
}

CaseResult RunCase(const CaseSpec& spec, const RunnerOptions& options) {
  testing::TempDir dir("lamina-difffuzz");
  const std::string log_path = dir.path() + "/case.log";
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return Broken("start", "pipe2 failed");
  fflush(nullptr);
  const pid_t child = fork();
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(pipe_fds[0]);
    int log = open(log_path.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
    if (log >= 0) {
      dup2(log, STDERR_FILENO);
      close(log);
    }
    CaseResult result = CaseBody(spec, dir.path(), pipe_fds[1], options.stall_at).Run();
    std::string allowed;
    for (const std::string& name : result.allowed) allowed += (allowed.empty() ? "" : ",") + name;
    std::string line = "R " + std::to_string(static_cast<int>(result.status)) + " " +
                       Quote(result.stage) + " " + Quote(result.detail) + " " + Quote(allowed) +
                       " " + Quote(result.known) + "\n";
    for (size_t done = 0; done < line.size();) {
      ssize_t n = write(pipe_fds[1], line.data() + done, line.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    _exit(0);
  }
  close(pipe_fds[1]);
  CaseResult result;
  if (child < 0) {
    close(pipe_fds[0]);
    return Broken("start", "fork failed");
  }
  // Read progress and the result until the child ends or the deadline.
  std::string output;
  const auto deadline = std::chrono::steady_clock::now() + options.deadline;
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    struct pollfd pfd = {pipe_fds[0], POLLIN, 0};
    if (poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000))) <= 0) continue;
    char buffer[4096];
    ssize_t n = read(pipe_fds[0], buffer, sizeof(buffer));
    if (n <= 0) break;
    output.append(buffer, static_cast<size_t>(n));
    if (options.verbose) fprintf(stderr, "%.*s", static_cast<int>(n), buffer);
  }
  close(pipe_fds[0]);
  if (timed_out) kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);

  // The last stage the child announced, and its result if it got there.
  std::string last_stage = "start";
  bool have_result = false;
  for (size_t at = 0; at < output.size();) {
    size_t end = output.find('\n', at);
    if (end == std::string::npos) end = output.size();
    const std::string line = output.substr(at, end - at);
    at = end + 1;
    if (line.compare(0, 2, "P ") == 0) {
      last_stage = line.substr(2);
    } else if (line.compare(0, 2, "R ") == 0) {
      size_t pos = line.find(' ', 2);
      result.status = static_cast<Status>(std::stoi(line.substr(2, pos - 2)));
      size_t next;
      result.stage = Unquote(line, pos + 2, &next);
      result.detail = Unquote(line, next + 2, &next);
      const std::string allowed = Unquote(line, next + 2, &next);
      result.known = Unquote(line, next + 2);
      for (size_t at = 0; at < allowed.size();) {
        size_t comma = allowed.find(',', at);
        if (comma == std::string::npos) comma = allowed.size();
        result.allowed.insert(allowed.substr(at, comma - at));
        at = comma + 1;
      }
      have_result = true;
    }
  }
  if (timed_out) {
    result = Broken(last_stage,
                    "no answer within " + std::to_string(options.deadline.count()) + " s (a hang)");
  } else if (!have_result) {
    std::string how = WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
                                          : "exited with " + std::to_string(WEXITSTATUS(status));
    result = Broken(last_stage, "the case's process " + how + " (a crash)");
  }
  // A sanitizer that reports and lets the process go on (ThreadSanitizer
  // does) leaves its report in the log only: the child ends with _exit,
  // before the exit code would say so.
  const std::string log = testing::ReadFile(log_path);
  for (const char* report : {"WARNING: ThreadSanitizer", "ERROR: AddressSanitizer",
                             "runtime error:", "ERROR: LeakSanitizer"}) {
    if (result.status != Status::kBroken && log.find(report) != std::string::npos) {
      result = Broken(last_stage, std::string("a sanitizer report (") + report + ") in the log");
    }
  }
  if (result.status == Status::kBroken) result.known = KnownBroken(spec, result.detail);
  if (result.status == Status::kBroken || result.status == Status::kDifferent) {
    result.log = Tail(log, 40);
  }
  result.scratch = dir.path();
  return result;
}

}  // namespace lamina::difffuzz
