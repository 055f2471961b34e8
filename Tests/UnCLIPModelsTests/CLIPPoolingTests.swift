import XCTest
@testable import UnCLIPModels

/// Where `CLIPTextModelWithProjection` pools: transformers' rule in each case.
final class CLIPPoolingTests: XCTestCase {
    func model(eos: Int) throws -> CLIPTextModelWithProjection {
        var c = CLIPTextConfig()
        (c.vocabSize, c.hiddenSize, c.intermediateSize, c.numHiddenLayers, c.numAttentionHeads) = (20, 8, 16, 1, 2)
        (c.maxPositionEmbeddings, c.projectionDim, c.eosTokenId) = (6, 4, eos)
        let m = try CLIPTextModelWithProjection(c)
        var rng = Philox(seed: 3)
        m.resetParameters(using: &rng)
        return m
    }

    /// The text embedding is the projection of the hidden state at `position` of each row.
    func assertPools(_ m: CLIPTextModelWithProjection, _ ids: [[Int]], at positions: [Int], file: StaticString = #filePath, line: UInt = #line) {
        withNoGrad {
            let out = m(ids)
            for (b, p) in positions.enumerated() {
                let row = out.lastHiddenState.toArray()[(b * 6 + p) * 8 ..< (b * 6 + p + 1) * 8]
                let expected = m.text_projection(Tensor(shape: [1, 8], Array(row))).toArray()
                let got = Array(out.textEmbeds.toArray()[b * 4 ..< (b + 1) * 4])
                for (x, y) in zip(got, expected) { XCTAssertEqual(x, y, accuracy: 1e-5, "row \(b)", file: file, line: line) }
            }
        }
    }

    func testPoolsAtTheFirstEOSAndAtZeroWhenThereIsNone() throws {
        let m = try model(eos: 19)
        // The first 19 of each row; a row without 19 pools position 0 (`(ids == eos).int().argmax(-1)`), as
        // transformers does when a config names another EOS than its tokenizer's.
        assertPools(m, [[18, 3, 19, 19, 19, 19], [18, 3, 4, 5, 6, 7]], at: [2, 0])
    }

    func testLegacyEOSTwoPoolsAtTheLargestID() throws {
        assertPools(try model(eos: 2), [[18, 3, 19, 19, 5, 1], [0, 12, 4, 5, 6, 7]], at: [2, 1])
    }
}
