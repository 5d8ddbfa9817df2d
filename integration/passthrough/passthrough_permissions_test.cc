// Users of a passthrough mount get what the same users get on the source
// directory, and nothing more: the permission matrix (permission_matrix.h)
// as root, capability-less root, an owner, a group member and a stranger,
// through a root daemon mounted with allow_other and *without*
// default_permissions (the daemon turns the kernel's checks on itself),
// against the plain twin directory. Then the reported attack, step by step,
// through `laminafs passthrough -o allow_other`.

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <tuple>
#include <vector>

#include "integration/harness/mount_harness.h"
#include "integration/passthrough/passthrough_fixture.h"
#include "integration/passthrough/permission_matrix.h"

namespace lamina::testing {
namespace {

using MatrixParam = std::tuple<PassthroughParam, Principal>;

class PassthroughPermissionMatrixTest : public ::testing::TestWithParam<MatrixParam> {
 protected:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0U) << "needs root";
    MountSetup setup;
    setup.mount_options = {"allow_other"};  // no default_permissions
    mount_ = std::make_unique<MountedPassthrough>(std::get<0>(GetParam()).mode, setup);
  }
  void TearDown() override { mount_.reset(); }

  std::unique_ptr<MountedPassthrough> mount_;
};

// What the daemon cannot tell apart: a SETATTR that changes nothing is both
// chown(f, -1, -1) and the kernel's request to drop set-ID bits before a
// write. The kernel checked neither for a mode change, the source refuses
// the first (EPERM) to a caller who may not chmod a set-ID file and lets
// the second through; the daemon answers both OK and drops the bits only
// for a caller who may chmod (the write drops them on its own).
bool MayNotChmodOthersFiles(const Principal& who) {
  return who.uid != kMatrixOwner && (who.uid != 0 || who.drop_capabilities);
}
const std::vector<KnownDifference>& KnownDifferences() {
  static const std::vector<KnownDifference> known = {
      {"chown(f, -1, -1) of another's set-ID file answers OK, changing nothing",
       {"chown-none setid-chown-none:"},
       MayNotChmodOthersFiles},
  };
  return known;
}

TEST_P(PassthroughPermissionMatrixTest, SameOutcomesAndStateAsThePlainDirectory) {
  const Principal& who = std::get<1>(GetParam());
  const std::string source = mount_->source() + "/m", twin = mount_->twin() + "/m";
  for (const std::string& root : {source, twin}) {
    ASSERT_EQ(mkdir(root.c_str(), 0755), 0);
    ASSERT_EQ(BuildMatrixTree(root), "");
  }
  ASSERT_EQ(StateDifference(DescribeMatrixState(source), DescribeMatrixState(twin)), "");
  const std::vector<std::vector<std::string>> outcomes =
      RunMatrixAs(who, {mount_->mnt() + "/m", twin});
  EXPECT_EQ(CompareMatrix(who, outcomes, DescribeMatrixState(source), DescribeMatrixState(twin),
                          KnownDifferences()),
            "")
      << "left: through the mount (the source), right: the plain twin";
}

std::string MatrixName(const ::testing::TestParamInfo<MatrixParam>& info) {
  return std::string(std::get<0>(info.param).name) + "_" + std::get<1>(info.param).name;
}

INSTANTIATE_TEST_SUITE_P(passthrough, PassthroughPermissionMatrixTest,
                         ::testing::Combine(LAMINA_PASSTHROUGH_PARAMS,
                                            ::testing::ValuesIn(MatrixPrincipals())),
                         MatrixName);

class PassthroughSetIdTest : public PassthroughTest {};

// A file that becomes set-user-ID while another user holds it open for
// writing loses the bit at that user's next write, as on the plain twin
// (the write does not re-check permissions; the kernel drops the bit for a
// writer without CAP_FSETID). With FUSE passthrough the write reaches the
// source with the credentials the kernel kept for the backing file, the
// daemon's: with CAP_FSETID among them the bit stayed, and the writer had
// put its bytes into a program that runs as the owner.
TEST_P(PassthroughSetIdTest, WriteAfterTheFileBecameSetIdClearsIt) {
  ASSERT_EQ(geteuid(), 0U) << "needs root";
  for (const std::string& base : {Src(), Twin()}) {
    WriteFile(base + "/prog", "#!/bin/sh\n");
    ASSERT_EQ(chown((base + "/prog").c_str(), kMatrixOwner, kMatrixOwner), 0);
    ASSERT_EQ(chmod((base + "/prog").c_str(), 0666), 0);
  }
  for (const std::string& root : {Mnt(), Twin()}) {
    const std::string prog = root + "/prog";
    int opened[2], go[2];
    ASSERT_EQ(pipe2(opened, O_CLOEXEC), 0);
    ASSERT_EQ(pipe2(go, O_CLOEXEC), 0);
    pid_t pid = fork();
    if (pid == 0) {
      char byte = 0;
      if (setgroups(0, nullptr) != 0 ||
          setresgid(kMatrixStranger, kMatrixStranger, kMatrixStranger) != 0 ||
          setresuid(kMatrixStranger, kMatrixStranger, kMatrixStranger) != 0) {
        _exit(1);
      }
      int fd = open(prog.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
      if (fd < 0 || write(opened[1], "o", 1) != 1 || read(go[0], &byte, 1) != 1) _exit(2);
      _exit(write(fd, "id\n", 3) == 3 ? 0 : 3);
    }
    close(opened[1]);
    close(go[0]);
    char byte = 0;
    EXPECT_EQ(read(opened[0], &byte, 1), 1) << root << ": the stranger could not open";
    // The owner makes it set-user-ID while the stranger holds it open.
    const Principal owner{"owner", kMatrixOwner, kMatrixOwner, {}};
    EXPECT_EQ(RunAs(owner, [&] { return std::to_string(chmod(prog.c_str(), 04777)); }), "0");
    EXPECT_EQ(write(go[1], "g", 1), 1);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << root << " " << status;
    close(opened[0]);
    close(go[1]);
  }
  struct stat mounted {
  }, plain{};
  ASSERT_EQ(stat(Src("prog").c_str(), &mounted), 0);
  ASSERT_EQ(stat(Twin("prog").c_str(), &plain), 0);
  EXPECT_EQ(plain.st_mode & 07777, 0777U);
  EXPECT_EQ(mounted.st_mode & 07777, plain.st_mode & 07777);
  EXPECT_EQ(ReadFile(Src("prog")), ReadFile(Twin("prog")));
}

INSTANTIATE_TEST_SUITE_P(passthrough, PassthroughSetIdTest, LAMINA_PASSTHROUGH_PARAMS, ParamName);

}  // namespace
}  // namespace lamina::testing
