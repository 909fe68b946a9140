#include "cmd/cask-agent/modules.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>

#include "lib/base/fs.h"

namespace cask::agent {
namespace {

constexpr char kDep[] =
    "kernel/drivers/virtio/virtio_ring.ko:\n"
    "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
    "kernel/drivers/virtio/virtio_pci_modern_dev.ko:\n"
    "kernel/drivers/virtio/virtio_pci_legacy_dev.ko:\n"
    "kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko "
    "kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko "
    "kernel/drivers/virtio/virtio_ring.ko\n"
    "kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n"
    "\n"
    "# comment\n"
    "kernel/fs/fuse/fuse.ko:\n"
    "kernel/fs/fuse/virtiofs.ko: kernel/fs/fuse/fuse.ko kernel/drivers/virtio/virtio.ko "
    "kernel/drivers/virtio/virtio_ring.ko\n"
    "kernel/net/some-thing.ko.xz:\n";

size_t IndexOf(const std::vector<std::string>& v, const std::string& s) {
  return static_cast<size_t>(std::find(v.begin(), v.end(), s) - v.begin());
}

TEST(Modules, Names) {
  EXPECT_EQ(ModuleNameFromPath("kernel/fs/fuse/virtiofs.ko"), "virtiofs");
  EXPECT_EQ(ModuleNameFromPath("kernel/net/some-thing.ko.xz"), "some_thing");
  EXPECT_EQ(NormalizeModuleName("nf-nat"), "nf_nat");
}

TEST(Modules, ParseDep) {
  auto db = ParseModulesDep(kDep);
  ASSERT_TRUE(db.ok()) << db.error().ToString();
  ASSERT_EQ(db->count("virtiofs"), 1u);
  EXPECT_EQ(db->at("virtiofs").path, "kernel/fs/fuse/virtiofs.ko");
  EXPECT_EQ(db->at("virtiofs").deps, (std::vector<std::string>{"fuse", "virtio", "virtio_ring"}));
  EXPECT_EQ(db->count("some_thing"), 1u);
}

TEST(Modules, ParseDepRejectsGarbage) {
  auto db = ParseModulesDep("kernel/a.ko:\nthis line is wrong\n");
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.error().code(), Code::kInvalidArgument);
  EXPECT_NE(db.error().ToString().find("line 2"), std::string::npos);
}

TEST(Modules, PlanLoadsDependenciesFirstOnce) {
  auto db = ParseModulesDep(kDep);
  ASSERT_TRUE(db.ok());
  auto plan = PlanModuleLoad(*db, {"virtio_pci", "virtio-console", "virtiofs", "overlay"});
  ASSERT_TRUE(plan.ok()) << plan.error().ToString();
  const auto& o = plan->order;
  EXPECT_EQ(o.size(), 8u);  // each once
  EXPECT_LT(IndexOf(o, "virtio_ring"), IndexOf(o, "virtio"));
  EXPECT_LT(IndexOf(o, "virtio"), IndexOf(o, "virtio_pci"));
  EXPECT_LT(IndexOf(o, "virtio_pci_modern_dev"), IndexOf(o, "virtio_pci"));
  EXPECT_LT(IndexOf(o, "fuse"), IndexOf(o, "virtiofs"));
  EXPECT_LT(IndexOf(o, "virtio"), IndexOf(o, "virtio_console"));
  EXPECT_EQ(plan->absent, (std::vector<std::string>{"overlay"}));
}

TEST(Modules, PlanErrors) {
  auto db = ParseModulesDep("kernel/a.ko: kernel/b.ko\nkernel/b.ko: kernel/a.ko\nkernel/c.ko: kernel/zz.ko\n");
  ASSERT_TRUE(db.ok());
  auto cycle = PlanModuleLoad(*db, {"a"});
  ASSERT_FALSE(cycle.ok());
  EXPECT_NE(cycle.error().ToString().find("cycle"), std::string::npos);
  auto missing = PlanModuleLoad(*db, {"c"});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().ToString().find("zz"), std::string::npos);
}

TEST(Modules, Builtin) {
  auto b = ParseModulesBuiltin("kernel/fs/overlayfs/overlay.ko\nkernel/drivers/virtio/virtio-mmio.ko\n");
  EXPECT_EQ(b.count("overlay"), 1u);
  EXPECT_EQ(b.count("virtio_mmio"), 1u);
}

// Without CAP_SYS_MODULE-safe modules to load on the host, check the report
// classification with files that finit_module rejects.
TEST(Modules, LoadReportsEveryOutcome) {
  char tmpl[] = "/tmp/cask-modules-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  ASSERT_TRUE(MkdirAll(dir + "/kernel/x").ok());
  ASSERT_TRUE(MkdirAll(dir + "/sys/present_builtin").ok());
  ASSERT_TRUE(WriteFile(dir + "/modules.dep", "kernel/x/notamodule.ko:\n").ok());
  ASSERT_TRUE(WriteFile(dir + "/modules.builtin", "kernel/fs/overlayfs/overlay.ko\n").ok());
  ASSERT_TRUE(WriteFile(dir + "/kernel/x/notamodule.ko", "this is not an ELF file").ok());
  ModuleLoadOptions opts;
  opts.release_dir = dir;
  opts.sys_module_dir = dir + "/sys";
  opts.wanted = {"notamodule", "overlay", "present_builtin", "nowhere"};
  auto report = LoadKernelModules(opts);
  ASSERT_TRUE(report.ok()) << report.error().ToString();
  EXPECT_EQ(report->builtin, (std::vector<std::string>{"overlay", "present_builtin"}));
  EXPECT_EQ(report->missing, (std::vector<std::string>{"nowhere"}));
  ASSERT_EQ(report->failed.size(), 1u);
  EXPECT_NE(report->failed[0].find("notamodule"), std::string::npos);
  EXPECT_TRUE(report->loaded.empty());
  ASSERT_TRUE(RemoveAll(dir).ok());
}

}  // namespace
}  // namespace cask::agent
