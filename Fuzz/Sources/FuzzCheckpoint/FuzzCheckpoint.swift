import Foundation
import FuzzSupport
import UnCLIPModels
import UnCLIPNN
import UnCLIPTraining

/// The files runs resume from: a training checkpoint, read as `unclip train --resume` does (`Checkpoint.state`, then
/// `Checkpoint.read` into a model, its EMA and AdamW), and recorded noise (`--noise`: `RecordedNoise`, each stage's
/// draws and an edit's auxiliary streams, at the shapes the seeds hold).
let model: Linear = { let m = Linear(4, 3); m.requiresGrad(); return m }()  // trainable, so AdamW has its parameters
let ema = EMA(model)
let optimizer = AdamW(model)
let draws: [(Stage, [Int])] = [(.prior, [1, 4]), (.decoder, [1, 3, 8, 8]), (.superResolution(0), [1, 3, 16, 16])]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCheckpoint(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let url = FuzzFile.write(data, size, name: "checkpoint.safetensors")
    FuzzLog.outcome("checkpoint state") { _ = try Checkpoint.state(of: url) }
    FuzzLog.outcome("checkpoint") { _ = try Checkpoint.read(url, stage: .prior, model: model, ema: ema, optimizer: optimizer) }
    FuzzLog.outcome("noise") {
        var noise = try RecordedNoise(contentsOf: url)
        for (stage, shape) in draws {
            for index in 0..<2 { _ = try noise.noise(stage: stage, index: index, shape: shape) }
            _ = try noise.noise(stage: stage, auxiliary: .knownRegion, index: 0, shape: shape)
        }
    }
    return 0
}

/// The seed corpus: a checkpoint of this model after one AdamW step, the same for another stage, and a noise file
/// with two draws of each stage and one of the known-region stream.
func writeSeeds(to folder: URL) throws {
    model.weight.grad = .ones([3, 4]); model.bias!.grad = .ones([3])
    optimizer.step()
    _ = ema.update()
    for stage in [Stage.prior, .decoder] {
        try Checkpoint.write(folder.appendingPathComponent("checkpoint-\(stage.key).safetensors"), stage: stage, step: 1,
                             seed: 7, configJSON: "{\"steps\":10}", model: model, ema: ema, optimizer: optimizer)
    }
    var tensors: [String: Tensor] = [:]
    for (stage, shape) in draws {
        for index in 0..<2 { tensors["\(stage.key).\(index)"] = .full(shape, Float(index)) }
        tensors["\(stage.key).known.0"] = .full(shape, 0.5)
    }
    try SafeTensors.write(tensors, to: folder.appendingPathComponent("noise.safetensors"))
}

@_cdecl("FuzzCheckpoint_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    if argc == 3, String(cString: argv[1]!) == "--write-seeds" {
        do { try writeSeeds(to: URL(fileURLWithPath: String(cString: argv[2]!))) } catch { print("\(error)"); return 1 }
        return 0
    }
    return runFuzzer(argc, argv, fuzzCheckpoint)
}
