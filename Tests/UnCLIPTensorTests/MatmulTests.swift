import Foundation
import XCTest
@testable import UnCLIPTensor

/// One PyTorch reference case from Fixtures/{gemm,conv,attention}.json (written by Scripts/make_op_fixtures_gemm.py).
struct GemmFixtureCase {
    let inputs: [String: Tensor]
    let params: [String: Double]
    /// Upstream gradient: the reference gradients are those of sum(output * g).
    let g: Tensor
    let output: Tensor
    let grads: [String: Tensor]

    /// Every case in one fixture file, by name.
    static func load(_ file: String) throws -> [String: GemmFixtureCase] {
        guard let url = Bundle.module.url(forResource: file, withExtension: "json", subdirectory: "Fixtures") else {
            throw NSError(domain: "fixtures", code: 1, userInfo: [NSLocalizedDescriptionKey: "missing Fixtures/\(file).json"])
        }
        let root = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: [String: Any]]
        func tensor(_ any: Any) -> Tensor {
            let d = any as! [String: Any]
            let shape = (d["shape"] as! [NSNumber]).map(\.intValue)
            return Tensor(shape: shape, (d["data"] as! [NSNumber]).map(\.floatValue))
        }
        func tensors(_ any: Any?) -> [String: Tensor] { ((any as? [String: Any]) ?? [:]).mapValues(tensor) }
        return root.mapValues { c in
            GemmFixtureCase(inputs: tensors(c["inputs"]), params: ((c["params"] as? [String: NSNumber]) ?? [:]).mapValues(\.doubleValue),
                            g: tensor(c["g"]!), output: tensor(c["output"]!), grads: tensors(c["grads"]))
        }
    }

    /// Runs `f` on fresh leaves (gradients on for the inputs PyTorch differentiated), checks the output and every
    /// reference gradient to `tolerance` relative to max(1, |reference|).
    func check(_ name: String, tolerance: Float = 1e-4, file: StaticString = #filePath, line: UInt = #line,
               _ f: ([String: Tensor]) -> Tensor) {
        let leaves = inputs.mapValues { t -> Tensor in t.clone() }
        for (k, t) in leaves { t.requiresGrad = grads[k] != nil }
        let y = withGrad { f(leaves) }
        assertClose(y, output, tolerance, "\(name) output", file: file, line: line)
        withGrad { (y * g).sum() }.backward()
        for (k, ref) in grads {
            guard let got = leaves[k]?.grad else { XCTFail("\(name): no gradient for \(k)", file: file, line: line); continue }
            assertClose(got, ref, tolerance, "\(name) d\(k)", file: file, line: line)
        }
    }
}

/// Asserts equal shapes and |a − b| ≤ tolerance · max(1, |b|) elementwise.
func assertClose(_ a: Tensor, _ b: Tensor, _ tolerance: Float, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.shape, b.shape, "\(what): shape", file: file, line: line)
    guard a.shape == b.shape else { return }
    var worst: Float = 0, at = 0
    for i in 0..<a.count {
        let e = abs(a.data[i] - b.data[i]) / max(1, abs(b.data[i]))
        if !(e <= worst) { worst = e; at = i }
    }
    XCTAssertLessThanOrEqual(worst, tolerance, "\(what): worst relative error at \(at): \(a.data[at]) vs \(b.data[at])",
                             file: file, line: line)
}

final class MatmulTests: XCTestCase {
    func testMatmulMatchesPyTorch() throws {
        let cases = try GemmFixtureCase.load("gemm")
        for name in ["matmul_2d", "matmul_batched_shared_b", "matmul_broadcast_batch", "matmul_batched_both"] {
            let c = try XCTUnwrap(cases[name], name)
            c.check(name) { $0["a"]!.matmul($0["b"]!) }
        }
    }

    func testLinearMatchesPyTorch() throws {
        let cases = try GemmFixtureCase.load("gemm")
        try XCTUnwrap(cases["linear_bias"]).check("linear_bias") { $0["x"]!.linear(weight: $0["w"]!, bias: $0["b"]!) }
        try XCTUnwrap(cases["linear_nobias"]).check("linear_nobias") { $0["x"]!.linear(weight: $0["w"]!, bias: nil) }
    }

    func testMatmulKnownValues() {
        let a = Tensor(shape: [2, 3], [1, 2, 3, 4, 5, 6])
        let b = Tensor(shape: [3, 2], [7, 8, 9, 10, 11, 12])
        XCTAssertEqual(a.matmul(b).toArray(), [58, 64, 139, 154])
    }

    func testMatmulGradientCheck() {
        var rng = SimpleLCG(seed: 7)
        let a = rng.tensor([2, 3, 4]), b = rng.tensor([4, 5])
        XCTAssertLessThan(gradientCheckError([a, b]) { $0[0].matmul($0[1]) }, 1e-2)
        let c = rng.tensor([3, 1, 2, 4]), d = rng.tensor([2, 4, 3])
        XCTAssertLessThan(gradientCheckError([c, d]) { $0[0].matmul($0[1]) }, 1e-2)
    }

    func testLinearGradientCheck() {
        var rng = SimpleLCG(seed: 11)
        let x = rng.tensor([2, 3, 6]), w = rng.tensor([4, 6]), b = rng.tensor([4])
        XCTAssertLessThan(gradientCheckError([x, w, b]) { $0[0].linear(weight: $0[1], bias: $0[2]) }, 1e-2)
        XCTAssertLessThan(gradientCheckError([x, w]) { $0[0].linear(weight: $0[1], bias: nil) }, 1e-2)
    }

    /// Large enough products take the matmul-primitive path; it must agree with sgemm on the transposed weight.
    func testLargeLinearMatchesMatmul() {
        var rng = SimpleLCG(seed: 13)
        let (rows, inF, outF) = (70, 256, 240)
        XCTAssertGreaterThanOrEqual(2 * rows * inF * outF, LinearPrimitive.minFlops)
        let x = rng.tensor([rows, inF]), w = rng.tensor([outF, inF]), b = rng.tensor([outF])
        var wt = [Float](repeating: 0, count: inF * outF)
        for o in 0..<outF { for i in 0..<inF { wt[i * outF + o] = w[o, i] } }
        let reference = x.matmul(Tensor(shape: [inF, outF], wt))
        assertClose(x.linear(weight: w, bias: nil), reference, 1e-5, "linear without bias")
        assertClose(x.linear(weight: w, bias: b), reference + b, 1e-5, "linear with bias")
    }

    /// Many small products in a batch run one per thread; the result must equal the one-by-one products.
    func testBatchedSmallProductsMatchSingle() {
        var rng = SimpleLCG(seed: 3)
        let a = rng.tensor([16, 9, 7]), b = rng.tensor([16, 7, 5])
        let batched = a.matmul(b)
        for i in 0..<16 {
            let ai = Tensor(shape: [9, 7], Array(a.toArray()[(i * 63)..<((i + 1) * 63)]))
            let bi = Tensor(shape: [7, 5], Array(b.toArray()[(i * 35)..<((i + 1) * 35)]))
            XCTAssertEqual(Array(batched.toArray()[(i * 45)..<((i + 1) * 45)]), ai.matmul(bi).toArray())
        }
    }

    /// A sampling loop repeats shapes: the primitive cache must not grow with repeated calls.
    func testRepeatedCallsReuseCachedPrimitives() {
        var rng = SimpleLCG(seed: 5)
        let x = rng.tensor([1, 3, 8, 8]), w = rng.tensor([4, 3, 3, 3])
        _ = x.conv2d(weight: w, bias: nil, padding: 1)
        let before = DNNL.cache.count
        for _ in 0..<5 { _ = x.conv2d(weight: w, bias: nil, padding: 1) }
        XCTAssertEqual(DNNL.cache.count, before)
    }
}

/// A small deterministic generator for test inputs (uniform in [-1, 1)).
struct SimpleLCG {
    var state: UInt64
    init(seed: UInt64) { state = seed &* 6364136223846793005 &+ 1442695040888963407 }
    mutating func next() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(state >> 40) / Float(1 << 23) - 1
    }
    mutating func tensor(_ shape: [Int], scale: Float = 1) -> Tensor {
        let n = shape.reduce(1, *)
        return Tensor(shape: shape, (0..<n).map { _ in next() * scale })
    }
}
