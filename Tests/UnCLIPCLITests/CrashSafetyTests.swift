import Foundation
import XCTest
import UnCLIPImage
import UnCLIPNN

/// Kill -9 at random moments, inside checkpoint and image writes too: training resumes to weights bit-identical to an
/// uninterrupted run with every checkpoint readable, and a killed `generate` never leaves a partial PNG.
///
/// Drives the built `unclip` executable (beside the test bundle), since SIGKILL must hit a real process.
final class CrashSafetyTests: XCTestCase {
    /// `.build/<configuration>/unclip`, built by `swift test` beside the test bundle.
    static let binary: URL = {
        let package = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let candidates = [Bundle.main.executableURL?.deletingLastPathComponent(), Bundle.main.bundleURL,
                          Bundle.main.bundleURL.deletingLastPathComponent(), package.appendingPathComponent(".build/release")]
        let found = candidates.compactMap { $0?.appendingPathComponent("unclip") }
            .first { FileManager.default.isExecutableFile(atPath: $0.path) }
        return found ?? package.appendingPathComponent(".build/release/unclip")
    }()

    /// One thread and the sleeping wait policy: the same arithmetic in every run, and no re-exec (UnCLIPCommand.main).
    static let environment = ProcessInfo.processInfo.environment.merging(["OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"]) { $1 }

    /// A super-resolution UNet small enough that a step takes milliseconds, checkpointed every 2 steps, logging each.
    static let trainingConfig = #"""
        {"training": {"steps": 60, "batch_size": 2, "warmup_steps": 2, "checkpoint_every": 2, "seed": 5},
         "high_resolution": 16, "low_resolution": 8, "crop_size": 16, "block_out_channels": [8],
         "layers_per_block": 1, "norm_groups": 4, "precision": "fp32"}
        """#

    override func setUpWithError() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: Self.binary.path), "no unclip executable at \(Self.binary.path)")
    }

    func start(_ arguments: [String], environment extra: [String: String] = [:]) throws -> Process {
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = arguments
        process.environment = Self.environment.merging(extra) { $1 }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// Runs to the end; returns the exit status.
    @discardableResult
    func complete(_ arguments: [String], environment: [String: String] = [:]) throws -> Int32 {
        let process = try start(arguments, environment: environment)
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Waits until `condition` holds (polling) or `seconds` pass; true if it held.
    func poll(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if condition() { return true }
            usleep(2_000)
        }
        return condition()
    }

    func temporaryFiles(in folder: URL) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter { $0.contains(".tmp-") }
    }

    /// Every tensor of a checkpoint reads, and its metadata names a step.
    func assertReadable(_ checkpoint: URL, file: StaticString = #filePath, line: UInt = #line) {
        guard FileManager.default.fileExists(atPath: checkpoint.path) else { return }
        do {
            let f = try SafeTensorsFile(contentsOf: checkpoint)
            XCTAssertNotNil(f.metadata["step"].flatMap { Int($0) }, file: file, line: line)
            for name in f.names { _ = try f.tensor(name).toArray() }
        } catch {
            XCTFail("unreadable checkpoint after a kill: \(error)", file: file, line: line)
        }
    }

    /// The step of the checkpoint at `url`, 0 without one.
    func checkpointStep(_ url: URL) -> Int {
        (try? SafeTensorsFile(contentsOf: url))?.metadata["step"].flatMap { Int($0) } ?? 0
    }

    /// The last step the loss log records, counting only a log written after `date` (a resumed run first cuts the
    /// log back to its checkpoint).
    func loggedStep(_ log: URL, since date: Date) -> Int {
        guard let modified = (try? FileManager.default.attributesOfItem(atPath: log.path))?[.modificationDate] as? Date,
              modified > date, let text = try? String(contentsOf: log, encoding: .utf8),
              let last = text.split(separator: "\n").last, let range = last.range(of: "\"step\":") else { return 0 }
        return Int(last[range.upperBound...].prefix { $0.isNumber }) ?? 0
    }

    func testTrainingKilledTwentyTimesResumesToBitIdenticalWeights() throws {
        let dir = try scratch()
        let config = dir.appendingPathComponent("super_res.json")
        try Data(Self.trainingConfig.utf8).write(to: config)
        func train(_ out: URL, resume: Bool) -> [String] {
            ["train", "super_res", "--out", out.path, "--count", "16", "--config", config.path] + (resume ? ["--resume"] : [])
        }
        let reference = dir.appendingPathComponent("reference"), killed = dir.appendingPathComponent("killed")
        let started = Date()
        XCTAssertEqual(try complete(train(reference, resume: false)), 0)
        let uninterrupted = Date().timeIntervalSince(started)

        let checkpoints = killed.appendingPathComponent("checkpoints/super_res")
        let checkpoint = checkpoints.appendingPathComponent("checkpoint.safetensors")
        let log = checkpoints.appendingPathComponent("loss.jsonl")
        var rng = SystemRandomNumberGenerator()
        var kills = 0, insideWrites = 0, attempts = 0
        while kills < 24 && attempts < 60 {
            attempts += 1
            let stalled = kills % 2 == 1  // every other run stalls each checkpoint write between write and rename
            let launched = Date()
            let process = try start(train(killed, resume: kills > 0),
                                    environment: stalled ? ["UNCLIP_TEST_STALL_CHECKPOINT_WRITE": "0.2"] : [:])
            if stalled {
                // Kill while a temporary checkpoint sits written but not yet renamed.
                if poll(uninterrupted + 10, { !temporaryFiles(in: checkpoints).isEmpty }) { insideWrites += 1 }
            } else {
                // Kill at a random moment 1–3 steps past the last checkpoint, so each run gets a little further
                // (a kill at a random time would mostly land in the next run's start-up, or after the end).
                let target = checkpointStep(checkpoint) + Int.random(in: 1...3, using: &rng)
                _ = poll(uninterrupted + 10) { loggedStep(log, since: launched) >= target }
                usleep(UInt32.random(in: 0...20_000, using: &rng))
            }
            guard process.isRunning else {
                process.waitUntilExit()
                continue  // it finished first; that start does not count as a kill
            }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            XCTAssertEqual(process.terminationReason, .uncaughtSignal)
            kills += 1
            assertReadable(checkpoint)
        }
        XCTAssertGreaterThanOrEqual(kills, 20)
        XCTAssertGreaterThanOrEqual(insideWrites, 8, "kills that landed between a checkpoint's write and its rename")
        XCTAssertEqual(try complete(train(killed, resume: true)), 0)
        assertReadable(checkpoint)

        for file in ["super_res_first/diffusion_pytorch_model.safetensors", "checkpoints/super_res/checkpoint.safetensors"] {
            let a = try Data(contentsOf: reference.appendingPathComponent(file)), b = try Data(contentsOf: killed.appendingPathComponent(file))
            XCTAssertTrue(a == b, "\(file) differs from the uninterrupted run's after \(kills) kills")
        }
        print("crash safety: \(kills) kills (\(insideWrites) inside checkpoint writes) resumed to bit-identical weights")
    }

    func testAKilledGenerateNeverLeavesAPartialPNG() throws {
        let dir = try scratch()
        let model = CLITests.parity.appendingPathComponent("tiny_karlo_structure").path
        let out = dir.appendingPathComponent("out.png")
        let arguments = ["generate", "a red circle", "--model", model, "-o", out.path, "--decoder-steps", "4", "--super-res-steps", "2",
                         "--prior-steps", "2", "--quiet"]
        var kills = 0, insideWrites = 0
        var previous: Data?
        for attempt in 0..<10 {
            let stalled = attempt % 2 == 0
            let process = try start(arguments, environment: stalled ? ["UNCLIP_TEST_STALL_IMAGE_WRITE": "1"] : [:])
            if stalled {
                if poll(30, { !temporaryFiles(in: dir).isEmpty }) { insideWrites += 1 }
            } else {
                usleep(UInt32.random(in: 0...400_000))
            }
            if process.isRunning { kill(process.processIdentifier, SIGKILL); kills += 1 }
            process.waitUntilExit()
            // The output is absent, or a whole PNG: the previous one when the kill landed before the rename.
            if let data = try? Data(contentsOf: out) {
                XCTAssertNoThrow(try RGBImage(data: data), "a partial PNG under the output name")
                if let previous, process.terminationReason == .uncaughtSignal { XCTAssertEqual(data, previous) }
            }
            if attempt == 1 { XCTAssertEqual(try complete(arguments), 0) }  // from now on a previous image exists
            previous = try? Data(contentsOf: out)
        }
        XCTAssertGreaterThanOrEqual(kills, 5)
        XCTAssertGreaterThanOrEqual(insideWrites, 3)
    }

    /// The exit status and standard error of a run of the binary.
    func errorOutput(_ arguments: [String]) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = arguments
        process.environment = Self.environment
        let stderr = Pipe()
        process.standardError = stderr
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, text)
    }

    func testInputErrorsPrintNoUsageLineAndExitWithTheirStatus() throws {
        let dir = try scratch()
        let empty = dir.appendingPathComponent("empty.png")
        try Data().write(to: empty)
        let variation = CLITests.parity.appendingPathComponent("tiny_variation").path
        var (status, text) = try errorOutput(["classify", empty.path, "--model", variation, "--labels", "a"])
        XCTAssertEqual(status, 65)
        XCTAssertTrue(text.contains("empty.png"), text)
        XCTAssertFalse(text.contains("Usage:"), text)
        // A usage error found while parsing shows the subcommand's usage; one found by run() its message alone.
        (status, text) = try errorOutput(["generate", "x", "-n", "0"])
        XCTAssertEqual(status, 64)
        XCTAssertTrue(text.contains("Usage: unclip generate"), text)
        (status, text) = try errorOutput(["vary", empty.path, "--model", variation, "-o", empty.path])
        XCTAssertEqual(status, 64)
        XCTAssertTrue(text.contains("is the input") && !text.contains("Usage:"), text)
        // Invalid UTF-8 in a prompt (bytes FF FE) reaches the tokenizer repaired (U+FFFD), and draws.
        let out = dir.appendingPathComponent("utf8.png").path
        let shell = Process()
        shell.executableURL = URL(fileURLWithPath: "/bin/sh")
        shell.arguments = ["-c", #"exec "$0" generate "$(printf 'a\377\376 circle')" --model "$1" -o "$2" --prior-steps 2 --decoder-steps 2 --super-res-steps 2 --quiet"#,
                           Self.binary.path, CLITests.parity.appendingPathComponent("tiny_karlo_structure").path, out]
        shell.environment = Self.environment
        try shell.run()
        shell.waitUntilExit()
        XCTAssertEqual(shell.terminationStatus, 0)
        XCTAssertNoThrow(try RGBImage(contentsOf: URL(fileURLWithPath: out)))
    }
}
