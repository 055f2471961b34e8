import ArgumentParser
import Foundation
import UnCLIPModels
import UnCLIPImage

/// `unclip selftest`: checks the tensor engine, the file formats and the compute speed on this machine.
struct SelfTest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Check the engine on this machine: gradients, attention, files, RNG and GEMM speed.",
        discussion: "Prints one line per check and exits non-zero if any fails. Writes a sample grid PNG with --output.")

    @Option(name: .shortAndLong, help: "Where to write a PNG made by the engine (a grid of seeded noise images).")
    var output: String = "selftest.png"

    func run() throws {
        var failures = 0
        func check(_ name: String, _ detail: String, _ ok: Bool) {
            print("\(ok ? "ok  " : "FAIL") \(name.padding(toLength: 34, withPad: " ", startingAt: 0)) \(detail)")
            if !ok { failures += 1 }
        }

        // Autodiff through a small convolutional block with attention, against finite differences.
        var rng = Philox(seed: 7)
        let x = Tensor.randn([2, 4, 6, 6], using: &rng)
        let w = Tensor.randn([8, 4, 3, 3], using: &rng) * 0.3
        let gamma = Tensor.randn([8], using: &rng) * 0.1 + 1
        let err = gradientCheckError([x, w, gamma], delta: 1e-2, maxElements: 24) { v in
            let h = v[0].conv2d(weight: v[1], bias: nil, padding: 1).groupNorm(groups: 4, weight: v[2], bias: nil).silu()
            let tokens = h.reshaped([2, 8, 36]).transposed(1, 2).reshaped([2, 1, 36, 8])  // [B, heads, L, dh]
            return scaledDotProductAttention(query: tokens, key: tokens, value: tokens).softmax(axis: -1)
        }
        check("gradients (conv→norm→attention)", String(format: "max rel. error %.2e", err), err < 2e-2)

        // Fused attention against its definition.
        let q = Tensor.randn([1, 2, 5, 4], using: &rng), k = Tensor.randn([1, 2, 7, 4], using: &rng), v = Tensor.randn([1, 2, 7, 4], using: &rng)
        let fused = scaledDotProductAttention(query: q, key: k, value: v)
        let plain = (q.matmul(k.transposed(2, 3)) * 0.5).softmax(axis: -1).matmul(v)
        let attnErr = (fused - plain).abs().max().item
        check("attention = softmax(QKᵀ/√d)V", String(format: "max abs error %.2e", attnErr), attnErr < 1e-5)

        // RNG: same seed, same bits.
        var a = Philox(seed: 42), b = Philox(seed: 42)
        check("seeded RNG is reproducible", "Philox4x32-10", Tensor.randn([64], using: &a).toArray() == Tensor.randn([64], using: &b).toArray())

        // safetensors round trip (fp32 exact, fp16 within half-precision rounding).
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-selftest-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let t = Tensor.randn([3, 5], using: &rng)
        let f32 = dir.appendingPathComponent("a.safetensors"), f16 = dir.appendingPathComponent("b.safetensors")
        try SafeTensors.write(["t": t], to: f32)
        try SafeTensors.write(["t": t], to: f16, dtype: .f16)
        let back32 = try SafeTensorsFile(contentsOf: f32).tensor("t"), back16 = try SafeTensorsFile(contentsOf: f16).tensor("t")
        check("safetensors round trip", "F32 exact, F16 ≤ 1e-3", back32.toArray() == t.toArray() && (back16 - t).abs().max().item < 1e-3)

        // GEMM speed.
        let m = Tensor.randn([1024, 1024], using: &rng)
        _ = m.matmul(m)
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<5 { _ = m.matmul(m) }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 / 5
        let gflops = 2 * pow(1024.0, 3) / seconds / 1e9
        check("GEMM 1024³", String(format: "%.0f GFLOP/s on %d threads", gflops, Engine.threadCount), gflops > 20)

        // PNG: write a grid of seeded images and read it back.
        let images = try (0..<4).map { i -> RGBImage in
            var g = Philox(seed: UInt64(i))
            let noise = Tensor.randn([1, 3, 8, 8], using: &g).clamped(min: -1, max: 1)
            return try RGBImage(tensor: noise.resizedBicubicAntialiased(height: 32, width: 32).clamped(min: -1, max: 1))
        }
        let grid = RGBImage.grid(images, columns: 4, padding: 2)
        let url = URL(fileURLWithPath: output)
        try grid.writePNG(to: url)
        check("PNG write and read back", url.path, try RGBImage(contentsOf: url) == grid)

        if failures > 0 { throw ExitCode(1) }
        print("all checks passed")
    }
}
