#include "integration/harness/untouched_layers.h"

#include <sstream>

#include "gtest/gtest.h"

namespace lamina::testing {
namespace {

constexpr size_t kListed = 20;

LayerDigest TakeOrFail(const std::string& root) {
  LayerDigest digest = LayerDigest::Take(root);
  if (!digest.error().empty()) {
    ADD_FAILURE() << "cannot take the digest of layer " << root << ": " << digest.error();
  }
  return digest;
}

}  // namespace

void UntouchedLayers::Watch(const std::string& root) {
  if (Watching(root)) return;
  layers_.push_back({root, TakeOrFail(root), "before its first mount"});
}

bool UntouchedLayers::Watching(const std::string& root) const {
  for (const Watched& layer : layers_) {
    if (layer.root == root) return true;
  }
  return false;
}

void UntouchedLayers::Change(const std::string& why, const std::function<void()>& change) {
  for (const Watched& layer : layers_) Check(layer);
  change();
  for (Watched& layer : layers_) {
    layer.digest = TakeOrFail(layer.root);
    layer.recorded = "after the test's own change (" + why + ")";
  }
}

void UntouchedLayers::ExpectUntouched() {
  for (const Watched& layer : layers_) Check(layer);
  layers_.clear();
}

void UntouchedLayers::Check(const Watched& layer) const {
  const LayerDigest now = LayerDigest::Take(layer.root);
  const LayerDigest::Comparison changes = LayerDigest::Compare(layer.digest, now, kListed);
  if (changes.count == 0) return;
  std::ostringstream message;
  message << "lower layer " << layer.root << " changed since its digest was recorded "
          << layer.recorded << ": " << changes.count
          << (changes.count == 1 ? " difference" : " differences");
  if (changes.count > changes.listed.size()) message << ", the first " << kListed;
  message << " (object: field before -> after)";
  for (const std::string& line : changes.listed) message << "\n  " << line;
  ADD_FAILURE() << message.str();
}

}  // namespace lamina::testing
