import Foundation
import XCTest
import UnCLIPNN
@testable import UnCLIPModels

/// The paper's autoregressive prior: its code (PCA and buckets), the causal mask, cached decoding, and the
/// diffusion prior's two-sample trick.
final class AutoregressivePriorTests: XCTestCase {
    /// Rows with a known spectrum: coordinate j of a random rotation scaled by 2^(−j).
    func spectrumData(rows: Int, dim: Int, seed: UInt64 = 3) -> [[Float]] {
        var rng = Philox(seed: seed, stream: 0)
        let g = Tensor.randn([rows, dim], using: &rng).toArray()
        // A fixed rotation: the eigenvectors of a random symmetric matrix.
        let m = Tensor.randn([dim, dim], using: &rng).toArray().map(Double.init)
        let sym = (0..<(dim * dim)).map { (m[$0] + m[($0 % dim) * dim + $0 / dim]) / 2 }
        let axes = SymmetricEigen(sym, n: dim).vectors
        return (0..<rows).map { r in
            var z = [Float](repeating: 0.5, count: dim)  // a non-zero mean
            for j in 0..<dim {
                let c = g[r * dim + j] * pow(2, -Float(j))
                for i in 0..<dim { z[i] += c * Float(axes[j][i]) }
            }
            return z
        }
    }

    func testSymmetricEigenDecomposes() {
        let n = 12
        var rng = Philox(seed: 1, stream: 0)
        let m = Tensor.randn([n, n], using: &rng).toArray().map(Double.init)
        let a = (0..<(n * n)).map { (m[$0] + m[($0 % n) * n + $0 / n]) / 2 }
        let e = SymmetricEigen(a, n: n)
        XCTAssertEqual(e.values, e.values.sorted(by: >))
        for (lambda, v) in zip(e.values, e.vectors) {
            XCTAssertEqual(v.reduce(0) { $0 + $1 * $1 }, 1, accuracy: 1e-12)
            for i in 0..<n {
                let av = (0..<n).reduce(0.0) { $0 + a[i * n + $1] * v[$1] }
                XCTAssertEqual(av, lambda * v[i], accuracy: 1e-10)
            }
        }
        // The square root squares back.
        let r = e.power(0.5)
        let psd = (0..<(n * n)).map { idx in (0..<n).reduce(0.0) { $0 + a[(idx / n) * n + $1] * a[(idx % n) * n + $1] } }  // A·Aᵀ
        let root = SymmetricEigen(psd, n: n).power(0.5)
        for i in 0..<n { for j in 0..<n {
            XCTAssertEqual((0..<n).reduce(0.0) { $0 + root[i * n + $1] * root[$1 * n + j] }, psd[i * n + j], accuracy: 1e-9)
        } }
        XCTAssertEqual(r.count, n * n)
    }

    func testPCAKeepsTheComponentsThatHoldTheVarianceAndRoundTrips() {
        let dim = 10, data = spectrumData(rows: 4000, dim: dim)
        // All components: reconstruction is exact.
        let (full, explainedAll) = EmbeddingQuantizer.fit(data, varianceKept: 1, buckets: 1024)
        XCTAssertEqual(full.count, dim)
        XCTAssertEqual(explainedAll, 1, accuracy: 1e-9)
        for z in data.prefix(20) {
            for (a, b) in zip(full.reconstruct(full.project(z)), z) { XCTAssertEqual(a, b, accuracy: 1e-5) }
        }
        // Variances 4^(−j): the first three hold 98.4 %, the first four 99.6 %.
        let (q, explained) = EmbeddingQuantizer.fit(data, varianceKept: 0.99, buckets: 1024)
        XCTAssertEqual(q.count, 4)
        XCTAssertGreaterThanOrEqual(explained, 0.99)
        // The residual of the reconstruction is what the dropped components held.
        let residual = data.map { z in zip(q.reconstruct(q.project(z)), z).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) } }
        let total = data.map { z in zip(z, q.mean).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) } }
        XCTAssertEqual(residual.reduce(0, +) / total.reduce(0, +), 1 - explained, accuracy: 2e-3)
    }

    func testQuantisationRoundTripsWithinHalfABucket() {
        let data = spectrumData(rows: 2000, dim: 8)
        let (q, _) = EmbeddingQuantizer.fit(data, varianceKept: 0.999, buckets: 1024)
        for z in data.prefix(200) {
            let coords = q.project(z), tokens = q.encode(z)
            XCTAssertEqual(tokens.count, q.count)
            for k in 0..<q.count {
                XCTAssertTrue((0..<1024).contains(tokens[k]))
                let width = (q.high[k] - q.low[k]) / 1024
                XCTAssertLessThanOrEqual(abs(q.value(tokens[k], component: k) - coords[k]), width / 2 * 1.0001)
            }
            // Decoding lands within the buckets' half-widths of the projection (the axes are orthonormal).
            let back = q.project(q.decode(tokens))
            for k in 0..<q.count { XCTAssertEqual(back[k], q.value(tokens[k], component: k), accuracy: 1e-4) }
        }
        // Out-of-range values clamp into the end buckets.
        XCTAssertEqual(q.bucket(q.low[0] - 100, component: 0), 0)
        XCTAssertEqual(q.bucket(q.high[0] + 100, component: 0), 1023)
        XCTAssertEqual(q.bucket(.nan, component: 0), 0)
    }

    // MARK: The Transformer

    static func tinyModel(seed: UInt64 = 2) throws -> AutoregressivePriorTransformer {
        var c = AutoregressivePriorConfig()
        c.embeddingDim = 16; c.numEmbeddings = 5; c.numComponents = 6; c.numBuckets = 32; c.numDotQuantiles = 11
        c.numLayers = 2; c.numAttentionHeads = 2; c.attentionHeadDim = 8
        let model = try AutoregressivePriorTransformer(c)
        var rng = Philox(seed: seed, stream: 0)
        model.initialize(using: &rng)
        // Larger tables than training's init, so that every position's logits depend visibly on the inputs.
        withNoGrad {
            for t in [model.token_embedding.weight, model.dot_embedding.weight, model.positional_embedding] {
                t.assign(Tensor.randn(t.shape, using: &rng))
            }
        }
        let (q, _) = EmbeddingQuantizer.fit(Tensor.randn([64, 16], using: &rng).rowArrays(), varianceKept: 1, buckets: 32)
        var six = q
        six.components = Array(q.components.prefix(6)); six.low = Array(q.low.prefix(6)); six.high = Array(q.high.prefix(6))
        model.setCode(six, dotRange: (0.2, 0.9), dotQuantiles: (0..<11).map { 0.2 + 0.07 * Float($0) })
        model.eval()
        return model
    }

    /// Two captions, the second padded after 3 tokens.
    static func caption(_ model: AutoregressivePriorTransformer, rows: Int = 2, seed: UInt64 = 4) -> TextConditioning {
        var rng = Philox(seed: seed, stream: 0)
        let c = model.config
        let mask = (0..<rows).map { r in (0..<c.numEmbeddings).map { r % 2 == 1 && $0 >= 3 ? 0 : 1 } }
        return TextConditioning(promptEmbeds: Tensor.randn([rows, c.embeddingDim], using: &rng),
                                hiddenStates: Tensor.randn([rows, c.numEmbeddings, c.embeddingDim], using: &rng), mask: mask)
    }

    func testALaterTokenNeverChangesAnEarlierLogit() throws {
        let model = try Self.tinyModel(), text = Self.caption(model)
        let a = [[3, 7, 1, 30, 2], [0, 5, 9, 9, 11]]
        let base = withNoGrad { model(textEmbeds: text.promptEmbeds, hiddenStates: text.hiddenStates, mask: text.mask, dotTokens: [4, 20], tokens: a) }
        XCTAssertEqual(base.shape, [2, 6, 32])
        for j in 0..<5 {
            var b = a
            b[0][j] = (b[0][j] + 13) % 32
            b[1][j] = (b[1][j] + 7) % 32
            let changed = withNoGrad { model(textEmbeds: text.promptEmbeds, hiddenStates: text.hiddenStates, mask: text.mask, dotTokens: [4, 20], tokens: b) }
            // Logits at positions 0 … j predict coordinates 0 … j and see tokens < j only: bit-identical.
            let n = 32, l = 6
            for r in 0..<2 {
                for p in 0...j {
                    let s = (r * l + p) * n
                    XCTAssertEqual(Array(base.toArray()[s..<(s + n)]), Array(changed.toArray()[s..<(s + n)]), "row \(r), position \(p), token \(j) changed")
                }
                // …and the next position does see the change.
                let s = (r * l + j + 1) * n
                XCTAssertNotEqual(Array(base.toArray()[s..<(s + n)]), Array(changed.toArray()[s..<(s + n)]))
            }
        }
        // Padded caption tokens are masked out: changing them changes nothing.
        var hidden = text.hiddenStates.toArray()
        let c = model.config
        for t in 3..<c.numEmbeddings { for e in 0..<c.embeddingDim { hidden[(1 * c.numEmbeddings + t) * c.embeddingDim + e] += 5 } }
        let padded = withNoGrad { model(textEmbeds: text.promptEmbeds, hiddenStates: Tensor(shape: text.hiddenStates.shape, hidden), mask: text.mask, dotTokens: [4, 20], tokens: a) }
        XCTAssertEqual(Array(padded.toArray()[(6 * 32)...]), Array(base.toArray()[(6 * 32)...]))
    }

    func testCachedDecodingGivesTheLogitsOfTheFullSequence() throws {
        let model = try Self.tinyModel(), text = Self.caption(model)
        let tokens = [[3, 7, 1, 30, 2], [0, 5, 9, 9, 11]]
        let full = withNoGrad { model(textEmbeds: text.promptEmbeds, hiddenStates: text.hiddenStates, mask: text.mask, dotTokens: [4, 32], tokens: tokens) }.toArray()
        var (logits, cache) = withNoGrad { model.start(textEmbeds: text.promptEmbeds, hiddenStates: text.hiddenStates, mask: text.mask, dotTokens: [4, 32]) }
        for p in 0...5 {
            let got = logits.toArray()
            for r in 0..<2 { for k in 0..<32 { XCTAssertEqual(got[r * 32 + k], full[(r * 6 + p) * 32 + k], accuracy: 1e-4, "position \(p)") } }
            if p < 5 { logits = withNoGrad { model.next([tokens[0][p], tokens[1][p]], cache: &cache) } }
        }
        XCTAssertEqual(cache.length, model.config.sequenceLength)
    }

    func testCachedSamplingEqualsUncachedSampling() throws {
        let model = try Self.tinyModel()
        for guided in [false, true] {
            var options = SamplingOptions()
            options.priorGuidance = guided ? 3 : 1
            options.decoderGuidance = guided ? 3 : 1
            let text = Self.caption(model, rows: guided ? 6 : 3)
            var cached = AutoregressivePrior(model: model), uncached = cached
            cached.usesCache = true
            uncached.usesCache = false
            var n1 = SeededNoise(seed: 8), n2 = SeededNoise(seed: 8)
            let a = try withNoGrad { try cached.sample(text, batch: 3, options: options, noise: &n1, observer: RunObserver()) }
            let b = try withNoGrad { try uncached.sample(text, batch: 3, options: options, noise: &n2, observer: RunObserver()) }
            XCTAssertEqual(a.shape, [3, 16])
            XCTAssertEqual(a.toArray(), b.toArray(), "guided: \(guided)")
            // Another seed draws another embedding.
            var n3 = SeededNoise(seed: 9)
            let c = try withNoGrad { try cached.sample(text, batch: 3, options: options, noise: &n3, observer: RunObserver()) }
            XCTAssertNotEqual(a.toArray(), c.toArray())
        }
    }

    func testCategoricalSamplingInvertsTheCumulativeDistribution() {
        let logits = Tensor(shape: [1, 4], [1.0, 2, 3, 4].map { Float(Foundation.log($0)) })  // p = 0.1, 0.2, 0.3, 0.4
        XCTAssertEqual(AutoregressivePrior.sampleCategorical(logits, uniforms: [0.05]), [0])
        XCTAssertEqual(AutoregressivePrior.sampleCategorical(logits, uniforms: [0.25]), [1])
        XCTAssertEqual(AutoregressivePrior.sampleCategorical(logits, uniforms: [0.55]), [2])
        XCTAssertEqual(AutoregressivePrior.sampleCategorical(logits, uniforms: [0.999]), [3])
        XCTAssertEqual(AutoregressivePrior.uniforms(Tensor(shape: [3], [0, -1.959964, 1.959964])).map { ($0 * 1000).rounded() / 1000 }, [0.5, 0.025, 0.975])
    }

    func testTheDotTokenComesFromTheTopHalfOfTheTrainingDistribution() throws {
        let model = try Self.tinyModel()
        // Quantiles 0.2 … 0.9 over the range [0.2, 0.9]: the median is 0.55, bucket 16 of 32.
        XCTAssertEqual(model.dotToken(quantile: 0.5), model.dotToken(cosine: 0.55))
        XCTAssertEqual(model.dotToken(quantile: 0.5), 16)
        XCTAssertEqual(model.dotToken(quantile: 1), 31)
        XCTAssertEqual(model.noCaptionDotToken, 32)
    }

    func testConfigurationsNoModelCanHaveAreRefused() {
        var c = AutoregressivePriorConfig()
        c.numComponents = c.embeddingDim + 1
        XCTAssertThrowsError(try AutoregressivePriorTransformer(c)) { XCTAssertTrue("\($0)".contains("num_components"), "\($0)") }
        c = AutoregressivePriorConfig()
        c.numBuckets = 1
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("num_buckets"), "\($0)") }
    }
}

/// The diffusion prior's two-sample trick (paper §2.1), on a prior that returns planted embeddings.
final class PriorCandidatesTests: XCTestCase {
    /// Returns embeddings[call] on its call-th use.
    final class Planted: UnCLIPPrior {
        let embeddings: [Tensor]
        var calls = 0
        init(_ embeddings: [Tensor]) { self.embeddings = embeddings }
        func sample(_ text: TextConditioning, batch: Int, options: SamplingOptions, noise: inout some NoiseSource,
                    observer: RunObserver) throws -> Tensor {
            defer { calls += 1 }
            try observer.report(.prior, step: 1, of: 1)
            return embeddings[calls]
        }
    }

    func testTheCandidateClosestToTheTextEmbeddingIsKept() throws {
        let dir = try PipelineDirectory(PipelineStagesTests.tiny)
        let text = try UnCLIPPipeline(directory: PipelineStagesTests.tiny).encodePrompts(["a horse", "a cow"], imagesPerPrompt: 1, classifierFreeGuidance: true)
        let zt = text.promptEmbeds.sliced(axis: 0, 2..<4)  // the conditional rows
        let e = zt.shape[1]
        var rng = Philox(seed: 3, stream: 0)
        let far = Tensor.randn([2, e], using: &rng)
        // Candidate 1: row 0 is z_t itself (cosine 1), row 1 far; candidate 2 the other way round.
        let one = Tensor.concat([zt.sliced(axis: 0, 0..<1), far.sliced(axis: 0, 1..<2)], axis: 0)
        let two = Tensor.concat([far.sliced(axis: 0, 0..<1), zt.sliced(axis: 0, 1..<2) * 3], axis: 0)
        let planted = Planted([one, two, one])
        let pipeline = UnCLIPPipeline(components: UnCLIPComponents(
            tokenizer: try dir.loadTokenizer(), textEncoder: try dir.loadTextEncoder(), prior: planted,
            decoder: try dir.loadDecoderStage(), upsamplers: []))
        var options = PipelineStagesTests.fast
        options.priorCandidates = 2
        var noise = SeededNoise(seed: 1)
        var steps: [Int] = []
        let best = try pipeline.runPrior(text, batch: 2, options: options, noise: &noise) { p in steps.append(p.step); return p.stepCount == 2 }
        XCTAssertEqual(planted.calls, 2)
        XCTAssertEqual(steps, [1, 2], "one progress count over both candidates")
        XCTAssertEqual(Array(best.toArray()[0..<e]), Array(one.toArray()[0..<e]))
        XCTAssertEqual(Array(best.toArray()[e...]), Array(two.toArray()[e...]))
        // One candidate: the prior's own draw, untouched.
        options.priorCandidates = 1
        let single = try pipeline.runPrior(text, batch: 2, options: PipelineStagesTests.fast, noise: &noise)
        XCTAssertEqual(planted.calls, 3)
        XCTAssertEqual(single.shape, [2, e])
        // Asking for the autoregressive prior of a model without one names what to do.
        options.prior = .autoregressive
        XCTAssertThrowsError(try pipeline.runPrior(text, batch: 2, options: options, noise: &noise)) {
            XCTAssertTrue("\($0)".contains("ar-prior"), "\($0)")
        }
        options = PipelineStagesTests.fast
        options.priorCandidates = 0
        XCTAssertThrowsError(try pipeline.generate(prompts: ["a horse"], options: options, noise: &noise)) {
            XCTAssertTrue("\($0)".contains("prior candidates"), "\($0)")
        }
    }
}
