#if canImport(COpenMP) && os(Linux)
import COpenMP
#endif
import Foundation
import UnCLIPModels
import UnCLIPNN

// `unclip bench karlo`: one denoising step (one forward pass) of every full-size Karlo component with random
// weights, under the names and with the inputs of `peer_torch.py karlo`, so that Scripts/bench_karlo.sh can join the
// two and print swift/torch ratios measured in one sitting. Configs, batch sizes (classifier-free guidance doubles the
// prior and decoder batches; the super-resolution and image-encoder batches are halved back to 1), timestep 500 and
// input shapes follow peer_torch.py's `karlo_configs()` and `step_inputs()`.

/// The components `peer_torch.py karlo` times, in its order.
let karloComponents = ["text_encoder", "image_encoder", "prior", "decoder", "super_res_first"]

/// A component name the benchmark does not know.
struct UnknownKarloComponent: Error, CustomStringConvertible {
    let name: String
    var description: String { "bench karlo: unknown component \"\(name)\" (expected one of \(karloComponents.joined(separator: ", ")))" }
}

/// A benchmark output that came out non-finite: a broken kernel must not report a fast time.
struct NonFiniteBenchmarkOutput: Error, CustomStringConvertible {
    let name: String
    var description: String { "bench karlo: \(name) produced non-finite values" }
}

/// Builds `components` (names as in `peer_torch.py karlo`) with random weights, times one warm-up and `reps` forward
/// passes of each at `precision` with `threads` engine/oneDNN threads, and prints one JSON line per component.
///
/// Each line holds `name`, `precision`, `median_s`, `min_s`, `max_s`, `threads`, `params`, `weights`, `gflop` (the
/// step's convolution, linear, matrix-product and attention FLOPs, `Engine.countingFLOPs`), `gflops_per_s` (those
/// over the min time) and `peak_rss_gb`: the process's peak resident memory (VmHWM) while that component was loaded
/// (`.mapped`, the default) or built (`.heap`) and run. The peak is reset before each component where the kernel
/// allows it (`/proc/self/clear_refs`), so run one component per process for figures that cannot include an earlier
/// component's high-water mark (`peak_reset` says whether the reset took). With `compareFP32` at bf16, one fp32 step
/// follows (after the peak is read) and the line adds the bf16 output's error against it: `max_rel_err` = max |Δ| / max |y₃₂| and `mean_rel_err` = mean |Δ| / mean |y₃₂|.
func runKarloBenchmark(components: [String], reps: Int, threads: Int, precision: Precision = .fp32, compareFP32: Bool = false,
                       weights: BenchWeights = .mapped) throws {
    #if canImport(COpenMP) && os(Linux)
    // The engine's parallelFor and oneDNN both size their work by omp_get_max_threads().
    omp_set_num_threads(Int32(threads))
    #endif
    for name in components where !karloComponents.contains(name) { throw UnknownKarloComponent(name: name) }
    for name in components {
        BufferPool.shared.trim(to: 0)
        var reset = false
        let step = try makeKarloStep(name, weights: weights) { reset = resetPeakRSS() }
        var times: [Double] = []
        var flops = 0
        let output = try withNoGrad {
            try withPrecision(precision) {
                // Warm-up: builds primitives, reorders cached weights, fills the buffer pool; counts the step's FLOPs.
                let (first, counted) = Engine.countingFLOPs { step.run() }
                flops = counted
                guard first.toArray().allSatisfy({ $0.isFinite }) else { throw NonFiniteBenchmarkOutput(name: name) }
                let clock = ContinuousClock()
                for _ in 0..<reps {
                    let d = clock.measure { _ = step.run() }
                    times.append(Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18)
                }
                return first.toArray()
            }
        }
        times.sort()
        var fields: [String] = [
            "\"name\": \"\(name)_step\"", "\"precision\": \"\(precision)\"", "\"median_s\": \(times[times.count / 2])",
            "\"min_s\": \(times[0])", "\"max_s\": \(times[times.count - 1])", "\"threads\": \(threads)",
            "\"params\": \(step.params)", "\"weights\": \"\(weights)\"",
            "\"gflop\": \(Double(flops) / 1e9)", "\"gflops_per_s\": \(Double(flops) / 1e9 / times[0])",
            "\"peak_rss_gb\": \(peakRSSGiB().map { String($0) } ?? "null")", "\"peak_reset\": \(reset)",
        ]
        if compareFP32 && precision != .fp32 {
            let reference = withNoGrad { withPrecision(.fp32) { step.run().toArray() } }
            let e = relativeErrors(output, reference)
            fields += ["\"max_rel_err\": \(e.max)", "\"mean_rel_err\": \(e.mean)"]
        }
        print("{\(fields.joined(separator: ", "))}")
        fflush(stdout)
    }
    BufferPool.shared.trim(to: 0)
}

/// max |a − b| / max |b| and mean |a − b| / mean |b|: errors relative to the reference's scale (an elementwise ratio
/// is meaningless where the reference crosses zero).
func relativeErrors(_ a: [Float], _ b: [Float]) -> (max: Double, mean: Double) {
    precondition(a.count == b.count && !a.isEmpty, "relativeErrors: \(a.count) against \(b.count) values")
    var maxDiff = 0.0, sumDiff = 0.0, maxRef = 0.0, sumRef = 0.0
    for (x, y) in zip(a, b) {
        let d = Double(abs(x - y)), r = Double(abs(y))
        maxDiff = max(maxDiff, d); sumDiff += d; maxRef = max(maxRef, r); sumRef += r
    }
    return (maxRef > 0 ? maxDiff / maxRef : maxDiff, sumRef > 0 ? sumDiff / sumRef : sumDiff)
}

/// One component with its inputs, ready to run a step.
private struct KarloStep {
    let params: Int
    /// Runs one forward pass and returns its main output.
    let run: () -> Tensor
}

/// Builds the component `name` with random weights (PyTorch's default initialisations), held as `weights` says
/// (`randomModel`), and peer_torch.py's inputs; `beforeLoading` runs once the random weights are made.
private func makeKarloStep(_ name: String, weights: BenchWeights, beforeLoading: () -> Void) throws -> KarloStep {
    var rng = Philox(seed: 0)
    let timestep = 500
    switch name {
    case "text_encoder":
        var config = CLIPTextConfig()
        config.hiddenSize = 768; config.intermediateSize = 3072; config.numHiddenLayers = 12
        config.numAttentionHeads = 12; config.maxPositionEmbeddings = 77; config.projectionDim = 768
        config.hiddenAct = "quick_gelu"
        let model = try randomModel(weights, &rng, beforeLoading) { try CLIPTextModelWithProjection(config) }
        // torch.randint(0, vocab_size, (2, 77)).
        let ids = (0..<2).map { _ in (0..<config.maxPositionEmbeddings).map { _ in Int.random(in: 0..<config.vocabSize, using: &rng) } }
        return KarloStep(params: model.parameterCount) { model(ids).lastHiddenState }
    case "image_encoder":
        var config = CLIPVisionConfig()
        config.hiddenSize = 1024; config.intermediateSize = 4096; config.numHiddenLayers = 24
        config.numAttentionHeads = 16; config.imageSize = 224; config.patchSize = 14; config.projectionDim = 768
        config.hiddenAct = "quick_gelu"
        let model = try randomModel(weights, &rng, beforeLoading) { try CLIPVisionModelWithProjection(config) }
        let pixels = Tensor.randn([1, 3, 224, 224], using: &rng)
        return KarloStep(params: model.parameterCount) { model(pixels) }
    case "prior":
        let config = PriorTransformerConfig()  // Karlo uses every default (spec §2.2)
        let model = try randomModel(weights, &rng, beforeLoading) { try PriorTransformer(config) }
        let b = 2, e = config.embeddingDim, n = config.numEmbeddings
        let sample = Tensor.randn([b, e], using: &rng), proj = Tensor.randn([b, e], using: &rng)
        let hidden = Tensor.randn([b, n, e], using: &rng)
        let mask = [[Int]](repeating: [Int](repeating: 1, count: n), count: b)
        return KarloStep(params: model.parameterCount) {
            model(sample, timestep: timestep, projEmbedding: proj, encoderHiddenStates: hidden, attentionMask: mask)
        }
    case "decoder":
        let config = UNet2DConditionConfig()  // the defaults are Karlo's decoder (spec §2.2)
        let model = try randomModel(weights, &rng, beforeLoading) { try UNet2DConditionModel(config) }
        let b = 2, s = config.sampleSize, context = 4 + 77
        let sample = Tensor.randn([b, config.inChannels, s, s], using: &rng)
        let states = Tensor.randn([b, context, config.crossAttentionDim], using: &rng)
        let classLabels = Tensor.randn([b, 4 * config.blockOutChannels[0]], using: &rng)
        let mask = [[Int]](repeating: [Int](repeating: 1, count: context), count: b)
        return KarloStep(params: model.parameterCount) {
            model(sample, timestep: timestep, encoderHiddenStates: states, classLabels: classLabels, attentionMask: mask)
        }
    case "super_res_first":
        var config = UNet2DConfig()
        config.sampleSize = 256; config.inChannels = 6; config.outChannels = 3; config.layersPerBlock = 3
        config.blockOutChannels = [320, 640, 960, 1280]
        config.downBlockTypes = Array(repeating: "ResnetDownsampleBlock2D", count: 4)
        config.upBlockTypes = Array(repeating: "ResnetUpsampleBlock2D", count: 4)
        config.addAttention = false
        config.resnetTimeScaleShift = .additive
        let model = try randomModel(weights, &rng, beforeLoading) { try UNet2DModel(config) }
        let s = config.sampleSize
        let sample = Tensor.randn([1, config.inChannels, s, s], using: &rng)  // no guidance in super-resolution
        return KarloStep(params: model.parameterCount) { model(sample, timestep: timestep) }
    default:
        throw UnknownKarloComponent(name: name)
    }
}

/// Where the benchmark's random weights live while it runs.
enum BenchWeights: String, CaseIterable, Sendable {
    /// Written to a safetensors file and memory-mapped back, as `PipelineDirectory` loads a component: what a user's
    /// run holds (a loaded model's fp32 pages are handed back where the engine keeps another copy).
    case mapped
    /// On the heap as built (the benchmark before 2026-12-07's last sitting).
    case heap
}

/// `make`'s model with random weights, read-only and in eval mode, as a loaded model is. `.mapped` writes the
/// weights to a temporary safetensors file, frees the built model, calls `beforeLoading` (the peak-RSS reset: the
/// figure then covers loading and stepping, not the making of random weights) and loads the file the way
/// `PipelineDirectory` does (mapped, checked, parameters built with untouched zeros); the file is unlinked once
/// mapped. `.heap` calls `beforeLoading` first and keeps the built model.
private func randomModel<M: Module>(_ weights: BenchWeights, _ rng: inout Philox, _ beforeLoading: () -> Void,
                                    _ make: () throws -> M) throws -> M {
    let model: M
    switch weights {
    case .heap:
        beforeLoading()
        model = try make()
        model.resetParameters(using: &rng)
    case .mapped:
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("unclip-bench-karlo-\(getpid())-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try {
            let random = try make()
            random.resetParameters(using: &rng)
            try SafeTensors.write(random.stateDict(), to: url)
        }()
        BufferPool.shared.trim(to: 0)
        beforeLoading()
        model = try Tensor.withUntouchedZeros { try make() }
        try model.load(try SafeTensorsFile(contentsOf: url))
    }
    model.eval()
    model.markParametersReadOnly()
    return model
}

/// The process's peak resident set size (VmHWM) in GiB, or nil where /proc is not available.
func peakRSSGiB() -> Double? {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kb = line.split(separator: " ").dropFirst().first.flatMap { Double($0) }
        return kb.map { $0 * 1024 / Double(1 << 30) }
    }
    return nil
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0 `clear_refs` value 5); false where that is not possible.
private func resetPeakRSS() -> Bool {
    guard let f = fopen("/proc/self/clear_refs", "w") else { return false }
    defer { fclose(f) }
    return fputs("5", f) >= 0 && fflush(f) == 0
}

/// `unclip bench peak`: the throughput this host reaches in oneDNN's best kernels, fp32 and bf16, measured in the
/// same sitting as the figures compared with it (the peak differs between hosts: a 512-bit FMA runs at full rate on
/// some, half on others; ../shared/design/compute.md). A 2048³ matrix product (the linear path, bf16 with fp32
/// accumulation at bf16) and the decoder's largest convolution (3 × 3, 320 → 320 channels, 2 × 64 × 64), best of
/// `reps`; one JSON line each with `gflops_per_s`.
func runPeakBenchmark(reps: Int, threads: Int) throws {
    #if canImport(COpenMP) && os(Linux)
    omp_set_num_threads(Int32(threads))
    #endif
    var rng = Philox(seed: 0)
    let n = 2048
    let a = Tensor.randn([n, n], using: &rng), w = Tensor.randn([n, n], using: &rng)
    w.storage.markReadOnly()  // as a loaded weight: its bf16 copy is cached, as in a model
    let x = Tensor.randn([2, 320, 64, 64], using: &rng), k = Tensor.randn([320, 320, 3, 3], using: &rng)
    k.storage.markReadOnly()
    let cases: [(name: String, precision: Precision, run: () -> Tensor)] = [
        ("matmul_2048_fp32", .fp32, { a.linear(weight: w, bias: nil) }),
        ("matmul_2048_bf16", .bf16, { a.linear(weight: w, bias: nil) }),
        ("conv3x3_320_64x64_fp32", .fp32, { x.conv2d(weight: k, bias: nil, padding: 1) }),
        ("conv3x3_320_64x64_bf16", .bf16, { x.conv2d(weight: k, bias: nil, padding: 1) }),
    ]
    for c in cases where c.precision == .fp32 || Precision.hardwareSupportsBF16 {
        let (best, flops) = withNoGrad {
            withPrecision(c.precision) { () -> (Double, Int) in
                let (_, flops) = Engine.countingFLOPs { c.run() }  // warm-up
                let clock = ContinuousClock()
                var best = Double.infinity
                for _ in 0..<reps {
                    let d = clock.measure { _ = c.run() }
                    best = min(best, Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18)
                }
                return (best, flops)
            }
        }
        print("{\"name\": \"\(c.name)\", \"precision\": \"\(c.precision)\", \"min_s\": \(best), \"gflop\": \(Double(flops) / 1e9), \"gflops_per_s\": \(Double(flops) / 1e9 / best), \"threads\": \(threads)}")
        fflush(stdout)
    }
}
