import Foundation
import XCTest
@testable import UnCLIPModels

/// Reference numbers from spec §11 and from diffusers' UnCLIPScheduler (Scripts/make_scheduler_fixtures.py).
final class UnCLIPSchedulerTests: XCTestCase {
    struct Fixture: Decodable {
        struct Step: Decodable {
            var config: String
            var timestep: Int
            var prevTimestep: Int?
            var sampleShape: [Int]
            var modelOutputShape: [Int]
            var sample: [Float]
            var modelOutput: [Float]
            var noise: [Float]?
            var prevSample: [Float]
        }
        var reference: String
        var betas: [Float]
        var alphasCumprod: [Float]
        var timesteps: [String: [Int]]
        var steps: [Step]
    }

    static let fixture = Result {
        try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/scheduler/unclip_scheduler.json")))
    }

    /// Difference in units in the last place.
    func ulps(_ a: Float, _ b: Float) -> Int { a == b ? 0 : abs(Int(a.bitPattern) - Int(b.bitPattern)) }

    func assertClose(_ actual: Float, _ expected: Float, maxULPs: Int = 1, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertLessThanOrEqual(ulps(actual, expected), maxULPs, "\(label): \(actual) vs \(expected)", file: file, line: line)
    }

    func testTrainingScheduleReferenceValues() throws {
        let s = try UnCLIPScheduler(config: .karloPrior)
        XCTAssertEqual(s.betas.count, 1000)
        assertClose(s.betas[0], 4.1284224e-05, "β₀")
        XCTAssertEqual(s.betas[999], Float(0.999))
        assertClose(s.alphasCumprod[0], 0.99995869, "ᾱ₀")
        assertClose(s.alphasCumprod[999], 2.4287350e-09, "ᾱ₉₉₉")
        XCTAssertEqual(s.initNoiseSigma, 1)
    }

    func testTrainingScheduleIsBitIdenticalToDiffusers() throws {
        let f = try Self.fixture.get()
        let s = try UnCLIPScheduler()
        XCTAssertEqual(s.betas, f.betas)
        XCTAssertEqual(s.alphasCumprod, f.alphasCumprod)
        // A float32 running product would not match (spec §11.1); make sure the test can tell.
        var naive: Float = 1
        let naiveProducts = s.alphas.map { naive *= $0; return naive }
        XCTAssertNotEqual(naiveProducts, f.alphasCumprod)
    }

    func testTimesteps() throws {
        var s = try UnCLIPScheduler(config: .karloDecoder)
        XCTAssertEqual(s.timesteps.count, 1000)
        try s.setTimesteps(25)
        XCTAssertEqual(s.timesteps, [999, 957, 916, 874, 832, 791, 749, 708, 666, 624, 583, 541, 500, 458, 416, 375, 333,
                                     291, 250, 208, 166, 125, 83, 42, 0])
        XCTAssertEqual(s.previousTimestep(afterIndex: 0), 957)
        XCTAssertNil(s.previousTimestep(afterIndex: 24))
        try s.setTimesteps(7)
        XCTAssertEqual(s.timesteps, [999, 832, 666, 500, 333, 166, 0])
        try s.setTimesteps(2)
        XCTAssertEqual(s.timesteps, [999, 0])
        for (n, expected) in try Self.fixture.get().timesteps {
            XCTAssertEqual(try UnCLIPScheduler.timesteps(numInferenceSteps: Int(n)!, numTrainTimesteps: 1000), expected, "n = \(n)")
        }
        XCTAssertThrowsError(try s.setTimesteps(1))
        XCTAssertThrowsError(try s.setTimesteps(1001))
    }

    /// The coefficient tables of spec §11.3 (float32 values from diffusers).
    func testCoefficientTables() throws {
        let s = try UnCLIPScheduler()
        // t, p, ā_t, ā_p, β_eff, c_x0, c_xt, σ (nil: no noise at t = 0)
        let rows: [(Int, Int?, Float, Float, Float, Float, Float, Float?)] = [
            (999, 957, 2.42873499e-09, 4.27823374e-03, 9.99999404e-01, 6.54081702e-02, 7.68737460e-04, 9.97858286e-01),
            (957, 916, 4.27823374e-03, 1.66386906e-02, 7.42874384e-01, 9.62358713e-02, 5.00780940e-01, 8.56535256e-01),
            (42, 0, 9.93851483e-01, 9.99958694e-01, 6.10744953e-03, 9.93300259e-01, 6.69749966e-03, 6.40547648e-03),
            (0, nil, 9.99958694e-01, 1, 4.12842237e-05, 9.99472320e-01, 0, nil),
            (999, 832, 2.42873499e-09, 6.62205368e-02, 9.99999940e-01, 2.57333487e-01, 2.27973505e-04, 9.66322601e-01),
            (832, 666, 6.62205368e-02, 2.46000558e-01, 7.30811477e-01, 3.88176352e-01, 4.18943048e-01, 7.68185437e-01),
            (666, 500, 2.46000558e-01, 4.92285043e-01, 5.00288367e-01, 4.65540737e-01, 4.76001889e-01, 5.80409706e-01),
            (500, 333, 4.92285043e-01, 7.41974711e-01, 3.36520433e-01, 5.70934117e-01, 4.13957834e-01, 4.13548887e-01),
            (333, 166, 7.41974711e-01, 9.27600086e-01, 2.00113595e-01, 7.46955514e-01, 2.50951588e-01, 2.36960620e-01),
            (166, 0, 9.27600086e-01, 9.99958694e-01, 7.23615885e-02, 9.99450028e-01, 5.49496152e-04, 6.42527500e-03),
        ]
        for (t, p, at, ap, beta, cx0, cxt, sigma) in rows {
            let c = try s.coefficients(timestep: t, prevTimestep: p)
            let label = "t = \(t), p = \(p ?? -1)"
            assertClose(c.alphaProdT, at, "ā_t \(label)")
            assertClose(c.alphaProdTPrev, ap, "ā_p \(label)")
            assertClose(c.beta, beta, "β \(label)")
            assertClose(c.predOriginalSampleCoeff, cx0, "c_x0 \(label)")
            assertClose(c.currentSampleCoeff, cxt, "c_xt \(label)")
            if let sigma { assertClose(c.fixedSmallLogStd, sigma, "σ \(label)") }
        }
        // The last step: β = β₀ but b_t = 1 − ᾱ₀ differs from it, so c_x0 ≠ 1 (spec §11.3 note).
        let last = try s.coefficients(timestep: 0)
        XCTAssertEqual(last.beta, s.betas[0])
        XCTAssertEqual(last.currentSampleCoeff, 0)
    }

    /// step() against diffusers for the prior, decoder and super-resolution configurations.
    func testStepMatchesDiffusers() throws {
        let f = try Self.fixture.get()
        let configs: [String: UnCLIPSchedulerConfig] = ["prior": .karloPrior, "decoder": .karloDecoder, "super_res": .karloSuperRes]
        var worst: Float = 0
        for step in f.steps {
            let s = try UnCLIPScheduler(config: configs[step.config]!)
            let sample = Tensor(shape: step.sampleShape, step.sample)
            let output = Tensor(shape: step.modelOutputShape, step.modelOutput)
            XCTAssertEqual(s.noiseShape(modelOutputShape: step.modelOutputShape, sampleShape: step.sampleShape), step.sampleShape)
            let noise = step.noise.map { Tensor(shape: step.sampleShape, $0) }
            let result = try s.step(modelOutput: output, timestep: step.timestep, sample: sample,
                                    prevTimestep: step.prevTimestep, noise: noise)
            XCTAssertEqual(result.shape, step.sampleShape)
            let label = "\(step.config) t = \(step.timestep) → \(step.prevTimestep.map(String.init) ?? "nil")"
            var maxDiff: Float = 0
            for (a, b) in zip(result.toArray(), step.prevSample) { maxDiff = max(maxDiff, abs(a - b)) }
            XCTAssertLessThanOrEqual(maxDiff, 1e-6, label)
            worst = max(worst, maxDiff)
            // Not bit-exact: PyTorch's CPU sqrt (and `** 0.5`) is not correctly rounded on the reference machine
            // (1 ulp off for ~20 % of inputs, checked against NumPy), so c_x0 / c_xt can differ by an ulp.
        }
        print("UnCLIPScheduler step: worst |Δ| vs diffusers = \(worst) over \(f.steps.count) steps")
    }

    func testStepValidatesInputs() throws {
        let decoder = try UnCLIPScheduler(config: .karloDecoder)
        let sample = Tensor.zeros([1, 3, 2, 2])
        let output = Tensor.zeros([1, 6, 2, 2])
        XCTAssertThrowsError(try decoder.step(modelOutput: output, timestep: 500, sample: sample, prevTimestep: 458)) { error in
            XCTAssertTrue("\(error)".contains("[1, 3, 2, 2]"), "\(error)")
        }
        XCTAssertThrowsError(try decoder.step(modelOutput: output, timestep: 500, sample: sample, noise: Tensor.zeros([1, 6, 2, 2])))
        XCTAssertThrowsError(try decoder.step(modelOutput: sample, timestep: 500, sample: sample, noise: sample))
        XCTAssertThrowsError(try decoder.step(modelOutput: output, timestep: 1000, sample: sample, noise: sample))
        XCTAssertThrowsError(try decoder.step(modelOutput: output, timestep: 10, sample: sample, prevTimestep: -2, noise: sample))
        // t = 0 needs no noise.
        XCTAssertNoThrow(try decoder.step(modelOutput: output, timestep: 0, sample: sample))
    }

    func testConfigDecoding() throws {
        let json = #"""
        {"_class_name": "UnCLIPScheduler", "_diffusers_version": "0.17.0.dev0", "clip_sample": true,
         "clip_sample_range": 5.0, "num_train_timesteps": 1000, "prediction_type": "sample",
         "variance_type": "fixed_small_log"}
        """#
        let config = try JSONDecoder().decode(UnCLIPSchedulerConfig.self, from: Data(json.utf8))
        XCTAssertEqual(config, .karloPrior)
        let defaults = try JSONDecoder().decode(UnCLIPSchedulerConfig.self, from: Data("{}".utf8))
        XCTAssertEqual(defaults, UnCLIPSchedulerConfig())
        for (key, value) in [("variance_type", "learned"), ("prediction_type", "v_prediction"), ("beta_schedule", "linear")] {
            XCTAssertThrowsError(try JSONDecoder().decode(UnCLIPSchedulerConfig.self, from: Data(#"{"\#(key)": "\#(value)"}"#.utf8))) { error in
                let text = "\(error)"
                XCTAssertTrue(text.contains(key) && text.contains(value) && text.contains("allowed"), text)
            }
        }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("scheduler-\(UUID().uuidString).json")
        try Data(json.utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        XCTAssertEqual(try UnCLIPScheduler(configURL: url).config, .karloPrior)
        XCTAssertThrowsError(try UnCLIPSchedulerConfig.load(from: url.appendingPathExtension("missing"))) { error in
            XCTAssertTrue("\(error)".contains("missing"), "\(error)")
        }
    }
}
