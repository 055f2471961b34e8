import ArgumentParser
import Foundation
import UnCLIPModels

/// `unclip inspect`: what a pipeline directory holds.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List a diffusers-layout unCLIP directory's components: class, configuration summary, parameter count.",
        discussion: "Reads configs and safetensors headers only; no weights are loaded.")

    @Argument(help: "The pipeline directory.")
    var directory: String

    func run() throws {
        let dir = try PipelineDirectory(URL(fileURLWithPath: directory))
        print("\(dir.url.path): \(dir.pipelineClass)")
        var total = 0
        let width = max(20, dir.components.keys.map(\.count).max() ?? 0)
        for name in dir.components.keys.sorted() {
            let (library, cls) = dir.components[name]!
            var line = "  \(name.padding(toLength: width, withPad: " ", startingAt: 0)) \(library).\(cls)"
            if let summary = summary(dir, name) { line += "  [\(summary)]" }
            if let weights = try? dir.weights(name) {
                let count = weights.names.reduce(0) { $0 + (weights.shape(of: $1)?.reduce(1, *) ?? 0) }
                total += count
                line += "  \(weights.names.count) tensors, \(formatCount(count)) parameters"
            }
            print(line)
        }
        print("  total: \(formatCount(total)) parameters")
    }

    func summary(_ dir: PipelineDirectory, _ name: String) -> String? {
        let folder = dir.url.appendingPathComponent(name)
        for file in ["config.json", "scheduler_config.json", "tokenizer_config.json", "preprocessor_config.json"] {
            guard let data = try? Data(contentsOf: folder.appendingPathComponent(file)),
                  let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { continue }
            let keys = ["hidden_size", "num_hidden_layers", "num_attention_heads", "projection_dim", "vocab_size",
                        "num_layers", "attention_head_dim", "embedding_dim", "block_out_channels", "layers_per_block",
                        "sample_size", "in_channels", "out_channels", "cross_attention_dim", "resnet_time_scale_shift",
                        "add_attention", "clip_embeddings_dim", "time_embed_dim", "variance_type", "prediction_type",
                        "clip_sample_range", "model_max_length", "pad_token", "image_size", "patch_size",
                        "num_components", "num_buckets", "explained_variance"]
            let parts = keys.compactMap { k -> String? in
                guard let v = object[k] else { return nil }
                let text = (v as? [Any]).map { "(" + $0.map { "\($0)" }.joined(separator: ", ") + ")" } ?? "\(v)"
                return "\(k)=\(text)"
            }
            return parts.isEmpty ? nil : parts.joined(separator: " ")
        }
        return nil
    }

    func formatCount(_ n: Int) -> String {
        n >= 1_000_000_000 ? String(format: "%.2f B", Double(n) / 1e9) : n >= 1_000_000 ? String(format: "%.1f M", Double(n) / 1e6)
            : n >= 1000 ? String(format: "%.1f k", Double(n) / 1e3) : "\(n)"
    }
}
