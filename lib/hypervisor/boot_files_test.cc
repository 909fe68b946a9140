#include "lib/hypervisor/boot_files.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "lib/base/fs.h"

namespace cask::hypervisor {
namespace {

TEST(SelectFileMappingsTest, PicksTheNamedFilesOnly) {
  const std::string maps =
      "55d0c0a00000-55d0c0b00000 r--p 00000000 fd:01 1234       /usr/bin/qemu-system-x86_64\n"
      "7f456ec00000-7f456ffbf000 rw-p 00000000 fd:01 99         /g/vmlinux\n"
      "7f456ffbf000-7f4570000000 rw-p 00000000 00:00 0 \n"
      "7f4584830000-7f45849ff000 r--p 00000000 fd:01 100        /g/initrd.img\n"
      "7f4584a00000-7f4584a01000 r--p 00000000 fd:01 101        /g/vmlinux2\n"
      "7f4584b00000-7f4584b01000 r--p 00000000 fd:01 102        /x/g/vmlinux\n"
      "7ffd1000-7ffd2000 rw-p 00000000 00:00 0                  [stack]\n";
  auto got = SelectFileMappings(maps, {"/g/vmlinux", "/g/initrd.img"});
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].start, 0x7f456ec00000u);
  EXPECT_EQ(got[0].end, 0x7f456ffbf000u);
  EXPECT_EQ(got[0].path, "/g/vmlinux");
  EXPECT_EQ(got[1].start, 0x7f4584830000u);
  EXPECT_EQ(got[1].path, "/g/initrd.img");
}

TEST(SelectFileMappingsTest, DeletedFilesAndSpacesInPaths) {
  const std::string maps =
      "1000-3000 rw-p 00000000 fd:01 99 /g/vmlinux (deleted)\n"
      "4000-5000 r--p 00000000 fd:01 98 /my dir/initrd.img\n"
      "6000-7000 r--p 00000000 fd:01 97 /my dir/initrd.img (deleted) (deleted)\n";
  auto got = SelectFileMappings(maps, {"/g/vmlinux", "/my dir/initrd.img"});
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].start, 0x1000u);
  EXPECT_EQ(got[0].path, "/g/vmlinux");
  EXPECT_EQ(got[1].start, 0x4000u);
  EXPECT_EQ(got[1].end, 0x5000u);
}

TEST(SelectFileMappingsTest, SkipsWhatDoesNotParse) {
  const std::string maps =
      "\n"
      "garbage\n"
      "zz00-3000 rw-p 00000000 fd:01 99 /g/vmlinux\n"   // not hex
      "3000-1000 rw-p 00000000 fd:01 99 /g/vmlinux\n"   // end before start
      "1000-1000 rw-p 00000000 fd:01 99 /g/vmlinux\n"   // empty
      "10000000000000000-10000000000000001 rw-p 0 fd:01 99 /g/vmlinux\n"  // too wide
      "1000 rw-p 00000000 fd:01 99 /g/vmlinux\n"        // no dash
      "1000-2000 rw-p 00000000 fd:01\n"                 // short
      "A000-B000 rw-p 00000000 fd:01 99 /g/vmlinux\n"   // the kernel prints lowercase
      "8000-9000 rw-p 00000000 fd:01 99 /g/vmlinux";    // no final newline: still read
  auto got = SelectFileMappings(maps, {"/g/vmlinux", ""});
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].start, 0x8000u);
  EXPECT_EQ(got[0].end, 0x9000u);
  EXPECT_TRUE(SelectFileMappings(maps, {}).empty());
  EXPECT_TRUE(SelectFileMappings("1000-2000 r--p 0 0:0 0\n", {""}).empty());
}

// Resident KiB of `pid`'s mappings of `path` (its smaps).
uint64_t MappedRssKib(pid_t pid, const std::string& path) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/smaps");
  std::string line;
  bool in = false;
  uint64_t kib = 0;
  while (std::getline(f, line)) {
    if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) && line.find('-') < line.find(' '))
      in = line.size() >= path.size() && line.compare(line.size() - path.size(), path.size(), path) == 0;
    else if (in && line.rfind("Rss:", 0) == 0)
      kib += std::strtoull(line.c_str() + 4, nullptr, 10);
  }
  return kib;
}

// A child that maps `path` privately, reads every page and waits to be
// killed; writes one byte to `ready` once the pages are resident.
pid_t SpawnMapper(const std::string& path, size_t size, int ready) {
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  void* p = fd < 0 ? MAP_FAILED : ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) ::_exit(1);
  volatile unsigned sum = 0;
  for (size_t i = 0; i < size; i += 4096) sum = sum + static_cast<const unsigned char*>(p)[i];
  char c = 1;
  if (::write(ready, &c, 1) != 1) ::_exit(1);
  for (;;) ::pause();
}

class PageOutTest : public testing::Test {
 protected:
  void SetUp() override {
    // A file on a disk filesystem (the working directory: the build tree);
    // tmpfs pages cannot be paged out without swap.
    char tmpl[] = "boot_files_test.XXXXXX";
    int fd = ::mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    path_ = tmpl;
    char* r = ::realpath(tmpl, nullptr);
    ASSERT_NE(r, nullptr);
    path_ = r;
    std::free(r);
    std::string data(kSize, 'k');
    ASSERT_TRUE(WriteAll(fd, data).ok());
    ASSERT_EQ(::fsync(fd), 0);  // clean pages, as a kernel image's are
    struct statfs st{};
    ASSERT_EQ(::fstatfs(fd, &st), 0);
    ::close(fd);
    if (st.f_type == 0x01021994 /* TMPFS_MAGIC */) GTEST_SKIP() << "the working directory is on tmpfs";
  }
  void TearDown() override {
    if (child_ > 0) {
      ::kill(child_, SIGKILL);
      ::waitpid(child_, nullptr, 0);
    }
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  static constexpr size_t kSize = 4 << 20;
  std::string path_;
  pid_t child_ = -1;
};

TEST_F(PageOutTest, DropsTheMappedFilesPagesAndNothingElse) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  child_ = SpawnMapper(path_, kSize, p[1]);
  ASSERT_GT(child_, 0);
  ::close(p[1]);
  char c = 0;
  ASSERT_EQ(::read(p[0], &c, 1), 1);
  ::close(p[0]);
  auto pidfd = sys::Pidfd::Open(child_);  // an unreaped child: its pid cannot be reused
  ASSERT_TRUE(pidfd.ok()) << pidfd.error().ToString();
  uint64_t before = MappedRssKib(child_, path_);
  ASSERT_GE(before, kSize / 1024 / 2) << "the child did not fault the file in";

  // Not mapped: nothing to do, no error.
  auto none = PageOutFileMappings(*pidfd, {"/nonexistent/vmlinux"});
  ASSERT_TRUE(none.ok()) << none.error().ToString();
  EXPECT_EQ(none->mappings, 0u);
  EXPECT_EQ(MappedRssKib(child_, path_), before);

  auto r = PageOutFileMappings(*pidfd, {path_});
  if (!r.ok() && r.error().sys_errno() == EPERM) GTEST_SKIP() << "needs CAP_SYS_NICE: " << r.error().ToString();
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->mappings, 1u);
  EXPECT_EQ(r->mapped_bytes, kSize);
  EXPECT_GT(r->rss_before_kib, 0u);
  EXPECT_EQ(r->readahead_files, 1u);
  EXPECT_LT(MappedRssKib(child_, path_), before / 4) << "before " << before << " KiB";
  EXPECT_TRUE(pidfd->Alive());
}

TEST_F(PageOutTest, AnExitedProcessIsAnError) {
  child_ = ::fork();
  ASSERT_GE(child_, 0);
  if (child_ == 0) ::_exit(0);
  auto pidfd = sys::Pidfd::Open(child_);
  ASSERT_TRUE(pidfd.ok()) << pidfd.error().ToString();
  ASSERT_TRUE(pidfd->WaitExited(std::chrono::milliseconds(60000)).ok());
  auto r = PageOutFileMappings(*pidfd, {path_});
  EXPECT_FALSE(r.ok());
  EXPECT_FALSE(PageOutFileMappings(sys::Pidfd(), {path_}).ok());
}

}  // namespace
}  // namespace cask::hypervisor
