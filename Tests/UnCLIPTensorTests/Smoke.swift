import XCTest
@testable import UnCLIPTensor

final class AutogradSmokeTests: XCTestCase {
    func testBroadcastMulBackward() {
        let a = Tensor(shape: [2, 3], [1, 2, 3, 4, 5, 6]); a.requiresGrad = true
        let b = Tensor(shape: [3], [10, 20, 30]); b.requiresGrad = true
        let y = (a * b + a).sum()
        XCTAssertEqual(y.item, 10 + 40 + 90 + 40 + 100 + 180 + 21)
        y.backward()
        XCTAssertEqual(a.grad!.toArray(), [11, 21, 31, 11, 21, 31])
        XCTAssertEqual(b.grad!.toArray(), [5, 7, 9])
    }

    func testParallelForCoversRange() {
        let n = 1_000_003
        let t = Tensor.zeros([n])
        let p = t.data
        parallelFor(n, grain: 1000) { r in for i in r { p[i] += 1 } }
        XCTAssertEqual(t.sum().item, Float(n))
    }
}
