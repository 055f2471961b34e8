import XCTest
import UnCLIPNN
@testable import UnCLIPModels

/// The attention layers' inference fast paths must equal the differentiable composites they stand in for.
final class AttentionFastPathTests: XCTestCase {
    func testConcatHeadsMatchesConcatThenSplit() {
        var rng = Philox(seed: 5)
        let a = Tensor.randn([2, 3, 12], using: &rng), b = Tensor.randn([2, 7, 12], using: &rng)
        let fast = withNoGrad { concatHeads([a, b], heads: 4) }
        let reference = withNoGrad { Tensor.concat([a, b], axis: 1).reshaped([2, 10, 4, 3]).permuted([0, 2, 1, 3]) }
        XCTAssertEqual(fast.shape, [2, 4, 10, 3])
        XCTAssertEqual(fast.toArray(), reference.toArray())
    }

    func testAddTokensMatchesTransposeThenAdd() {
        var rng = Philox(seed: 6)
        // 20 channels: one full 16-channel tile and a partial one.
        let x = Tensor.randn([2, 20, 3, 5], using: &rng), tokens = Tensor.randn([2, 15, 20], using: &rng)
        let fast = withNoGrad { addTokens(x, tokens) }
        let reference = withNoGrad { x + tokens.transposed(1, 2).reshaped(x.shape) }
        XCTAssertEqual(fast.toArray(), reference.toArray())
    }

    /// While recording, both run their composites, so gradients reach the inputs.
    func testFastPathsStayDifferentiable() {
        var rng = Philox(seed: 7)
        let a = Tensor.randn([1, 2, 8], using: &rng), b = Tensor.randn([1, 3, 8], using: &rng)
        XCTAssertLessThan(gradientCheckError([a, b]) { t in concatHeads([t[0], t[1]], heads: 2) }, 1e-2)
        let x = Tensor.randn([1, 4, 2, 2], using: &rng), tokens = Tensor.randn([1, 4, 4], using: &rng)
        XCTAssertLessThan(gradientCheckError([x, tokens]) { t in addTokens(t[0], t[1]) }, 1e-2)
    }
}
