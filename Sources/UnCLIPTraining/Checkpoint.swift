import Foundation
import UnCLIPModels
import UnCLIPNN

/// A training checkpoint: one safetensors file holding everything an exact resume needs.
///
/// Tensors: `model.<key>` (the live weights), `ema.<key>` (the averaged weights) and `optim.<key>.{step,exp_avg,
/// exp_avg_sq}` (AdamW state). Metadata: `format`, `stage`, `step`, `seed`, `ema_updates`, `config` (the stage
/// configuration as JSON) and `rng`, which documents that every random draw is a function of (seed, step), so
/// the seed and step *are* the generator state. The file is written to a temporary name and renamed, so a crash
/// or Ctrl-C while saving leaves the previous checkpoint intact.
public enum Checkpoint {
    /// The `format` metadata value of this layout.
    public static let format = "swift-unclip-checkpoint-1"

    /// What a checkpoint records besides the tensors.
    public struct State: Sendable {
        public var stage: String
        public var step: Int
        public var seed: UInt64
        public var configJSON: String
    }

    /// Writes the checkpoint atomically.
    public static func write(_ url: URL, stage: Stage, step: Int, seed: UInt64, configJSON: String,
                      model: Module, ema: EMA, optimizer: AdamW) throws {
        var tensors: [String: Tensor] = [:]
        for (key, t) in model.stateDict() { tensors["model." + key] = t }
        for (key, t) in ema.stateDict() { tensors["ema." + key] = t }
        for (key, t) in optimizer.stateTensors() { tensors["optim." + key] = t }
        let metadata = [
            "format": format, "stage": stage.key, "step": String(step), "seed": String(seed),
            "ema_updates": String(ema.updateCount), "config": configJSON,
            "rng": "stateless: Philox(seed, stream: step << 8 | purpose) per step; batches from per-epoch permutations",
        ]
        do { try SafeTensors.write(tensors, to: url, dtype: .f32, metadata: metadata) } catch {
            throw TrainingError.io(path: url.path, reason: "cannot write the checkpoint (\(error))")
        }
    }

    /// Reads only the metadata of a checkpoint.
    public static func state(of url: URL) throws -> State {
        let file = try SafeTensorsFile(contentsOf: url)
        return try state(file.metadata, path: url.path)
    }

    private static func state(_ m: [String: String], path: String) throws -> State {
        guard m["format"] == format else {
            throw TrainingError.checkpointMismatch(path: path, reason: "format is \(m["format"] ?? "missing"), expected \(format)")
        }
        guard let stage = m["stage"], let step = m["step"].flatMap({ Int($0) }), let seed = m["seed"].flatMap({ UInt64($0) }) else {
            throw TrainingError.checkpointMismatch(path: path, reason: "the metadata lacks stage, step or seed")
        }
        guard step >= 0 else { throw TrainingError.checkpointMismatch(path: path, reason: "its step is \(step)") }
        return State(stage: stage, step: step, seed: seed, configJSON: m["config"] ?? "")
    }

    /// Loads model, EMA and optimizer state (copies, not views of the file) and returns the metadata.
    public static func read(_ url: URL, stage: Stage, model: Module, ema: EMA, optimizer: AdamW) throws -> State {
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(contentsOf: url) } catch {
            throw TrainingError.checkpointMismatch(path: url.path, reason: "\(error)")
        }
        let state = try state(file.metadata, path: url.path)
        guard state.stage == stage.key || stage.earlierKeys.contains(state.stage) else {
            throw TrainingError.checkpointMismatch(path: url.path, reason: "it belongs to stage '\(state.stage)', not '\(stage.key)'")
        }
        var groups: [String: [String: Tensor]] = ["model": [:], "ema": [:], "optim": [:]]
        for name in file.names {
            guard let dot = name.firstIndex(of: "."), groups[String(name[..<dot])] != nil else {
                throw TrainingError.checkpointMismatch(path: url.path, reason: "unexpected tensor '\(name)'")
            }
            // Copies: the optimizer updates parameters in place, and the file may be replaced by the next save.
            groups[String(name[..<dot])]![String(name[name.index(after: dot)...])] = try file.tensor(name).clone()
        }
        do {
            try model.load(groups["model"]!)
            try ema.load(groups["ema"]!, updateCount: Int(file.metadata["ema_updates"] ?? "") ?? state.step)
            try optimizer.loadState(groups["optim"]!)
        } catch {
            throw TrainingError.checkpointMismatch(path: url.path, reason: "\(error)")
        }
        // `load` replaced the parameters' memory; AdamW updates it in place, which is fine for these fresh copies.
        return state
    }
}

/// Where `stage` keeps its checkpoint and loss log: `out/checkpoints/<stage key>`, or the folder an earlier version
/// wrote under the stage's earlier name when only that one exists (so `--resume` continues such a run).
func checkpointFolder(_ stage: Stage, in out: URL) -> URL {
    let folder = out.appendingPathComponent("checkpoints/\(stage.key)")
    guard !FileManager.default.fileExists(atPath: folder.path) else { return folder }
    return stage.earlierKeys.map { out.appendingPathComponent("checkpoints/\($0)") }
        .first { FileManager.default.fileExists(atPath: $0.path) } ?? folder
}
