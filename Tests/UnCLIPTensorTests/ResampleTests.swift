import Foundation
import XCTest
@testable import UnCLIPTensor

final class ResampleTests: XCTestCase {
    private func values(_ n: Int, seed: UInt64) -> [Float] {
        var s = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return (0..<n).map { _ in
            s = s &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(s >> 40) / Float(1 << 24) * 2 - 1
        }
    }

    func testMatchesPyTorch() throws {
        let cases = try OpsFixtures.load("resample")
        XCTAssertEqual(cases.count, 2)
        for c in cases {
            let x = Tensor(shape: c.shape, c.x); x.requiresGrad = true
            let y = withGrad { c.op == "upsample" ? x.upsampleNearest2x() : x.avgPool2x2() }
            OpsFixtures.assertClose(y.toArray(), c.y, atol: 1e-6, rtol: 1e-6, "\(c.name) output")
            y.backward(Tensor(shape: y.shape, c.gout))
            OpsFixtures.assertClose(x.grad!.toArray(), c.gx, atol: 1e-6, rtol: 1e-6, "\(c.name) input gradient")
        }
    }

    func testShapesAndValues() {
        let x = Tensor(shape: [1, 1, 2, 3], [1, 2, 3, 4, 5, 6])
        let up = x.upsampleNearest2x()
        XCTAssertEqual(up.shape, [1, 1, 4, 6])
        XCTAssertEqual(up.toArray(), [1, 1, 2, 2, 3, 3,
                                      1, 1, 2, 2, 3, 3,
                                      4, 4, 5, 5, 6, 6,
                                      4, 4, 5, 5, 6, 6])
        // Pooling undoes upsampling exactly.
        XCTAssertEqual(up.avgPool2x2().toArray(), x.toArray())
        // Odd sizes drop the last row and column (floor mode).
        let odd = Tensor(shape: [1, 1, 3, 3], [1, 2, 100, 3, 4, 100, 100, 100, 100])
        XCTAssertEqual(odd.avgPool2x2().shape, [1, 1, 1, 1])
        XCTAssertEqual(odd.avgPool2x2().item, 2.5)
    }

    func testUpsampleGradientCheck() {
        let err = gradientCheckError([Tensor(shape: [2, 3, 3, 5], values(90, seed: 1))], delta: 1e-2) { xs in
            xs[0].upsampleNearest2x()
        }
        XCTAssertLessThan(err, 1e-2)
    }

    func testAvgPoolGradientCheck() {
        let err = gradientCheckError([Tensor(shape: [2, 3, 5, 7], values(210, seed: 2))], delta: 1e-2, maxElements: 210) { xs in
            xs[0].avgPool2x2()
        }
        XCTAssertLessThan(err, 1e-2)
    }
}
