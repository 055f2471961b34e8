import Foundation
import XCTest
@testable import UnCLIPCLI
import UnCLIPImage
import UnCLIPNN
import UnCLIPTraining

/// The bad inputs of docs/reliability.md, each through the command line: its exit status and its message.
/// In-process on the parity fixtures' tiny pipelines, so the whole table runs in seconds.
final class BadInputTests: XCTestCase {
    static let parity = CLITests.parity
    static let imageFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../UnCLIPImageTests/Fixtures").standardizedFileURL
    static let karlo = parity.appendingPathComponent("tiny_karlo_structure").path
    static let variation = parity.appendingPathComponent("tiny_variation").path
    static let input = parity.appendingPathComponent("tiny_variation_pil/input.png").path
    /// Fast sampling settings of the tiny pipelines.
    static let fast = ["--prior-steps", "2", "--decoder-steps", "2", "--super-res-steps", "2", "--quiet"]

    /// The exit status and message of a command, as `unclip` would end with them.
    func outcome(_ arguments: [String]) -> (status: ExitStatus, message: String) {
        do {
            var command = try UnCLIPCommand.parseAsRoot(arguments)
            try command.run()
            return (.success, "")
        } catch {
            return (UnCLIPCommand.exitStatus(for: error), UnCLIPCommand.message(for: error))
        }
    }

    func assertOutcome(_ arguments: [String], _ status: ExitStatus, _ needles: [String] = [],
                       file: StaticString = #filePath, line: UInt = #line) {
        let (found, message) = outcome(arguments)
        XCTAssertEqual(found, status, "\(arguments): \(message)", file: file, line: line)
        for needle in needles {
            XCTAssertTrue(message.contains(needle), "\(arguments): \"\(message)\" lacks \"\(needle)\"", file: file, line: line)
        }
    }


    /// A scratch copy of a fixture pipeline with `config` of `component` edited.
    func model(_ name: String = "tiny_karlo_structure", editing file: String? = nil, _ edit: (inout [String: Any]) -> Void = { _ in }) throws -> String {
        let dir = try scratch().appendingPathComponent(name)
        try FileManager.default.copyItem(at: Self.parity.appendingPathComponent(name), to: dir)
        if let file {
            let url = dir.appendingPathComponent(file)
            var object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
            edit(&object)
            try JSONSerialization.data(withJSONObject: object).write(to: url)
        }
        return dir.path
    }

    func generate(_ model: String, _ extra: [String] = [], output: String? = nil) throws -> [String] {
        let out = try output ?? scratch().appendingPathComponent("out.png").path
        return ["generate", "a red circle", "--model", model, "-o", out] + Self.fast + extra
    }

    // MARK: Numbers

    func testCountsStepsGuidanceAndSeedsAreBoundedBeforeTheModelLoads() throws {
        let missing = "/nonexistent/model"  // never read: every refusal comes first
        for arguments in [["-n", "0"], ["-n", "1000000000"], ["--prior-steps=0"], ["--prior-steps=1000000"],
                          ["--decoder-steps=1"], ["--decoder-steps=-5"], ["--super-res-steps=100000"]] {
            let flag = String(arguments[0].prefix { $0 != "=" })
            assertOutcome(["generate", "x", "--model", missing] + arguments, .usage, [flag])
        }
        for value in ["nan", "inf", "-inf", "-1"] {
            assertOutcome(["generate", "x", "--model", missing, "--decoder-guidance=\(value)"], .usage, ["--decoder-guidance"])
            assertOutcome(["generate", "x", "--model", missing, "--prior-guidance=\(value)"], .usage, ["--prior-guidance"])
        }
        assertOutcome(["generate", "x", "--seed=-1"], .usage, ["--seed"])
        assertOutcome(["generate", "x", "--seed", "18446744073709551616"], .usage, ["--seed"])
        assertOutcome(["vary", Self.input, "-n", "100000"], .usage, ["-n"])
        assertOutcome(["interpolate", Self.input, Self.input, "--frames", "100000"], .usage, ["--frames"])
        assertOutcome(["train", "super_res", "--count=-1", "--out", try scratch().path], .usage, ["-1"])
        // The largest seed is a seed like any other.
        assertOutcome(try generate(Self.karlo, ["--seed", "18446744073709551615"]), .success)
    }

    /// `--precision`: an unknown value is a usage error naming the flag and the choices; bf16 and auto run (on the
    /// tiny Karlo-structured pipeline) where the CPU has bf16, and bf16 is refused before any weights load where not.
    func testPrecisionChoices() throws {
        assertOutcome(["generate", "x", "--model", "/nonexistent/model", "--precision", "fp16"], .usage, ["--precision", "bf16"])
        assertOutcome(try generate(Self.karlo, ["--precision", "auto"]), .success)
        if Precision.hardwareSupportsBF16 {
            assertOutcome(try generate(Self.karlo, ["--precision", "bf16"]), .success)
        } else {
            assertOutcome(["generate", "x", "--model", "/nonexistent/model", "--precision", "bf16"], .usage, ["bf16", "fp32"])
        }
        assertOutcome(["bench", "karlo", "--components", "decoder", "--precision", "half"], .usage, ["--precision"])
    }

    func testStepsAboveTheModelsTrainingTimestepsNameTheFlagBeforeAnyWeightLoads() throws {
        let dir = try model(editing: "decoder_scheduler/scheduler_config.json") { $0["num_train_timesteps"] = 50 }
        try FileManager.default.removeItem(atPath: dir + "/decoder")  // would fail if anything tried to load it
        try FileManager.default.createDirectory(atPath: dir + "/decoder", withIntermediateDirectories: false)
        try FileManager.default.copyItem(atPath: Self.karlo + "/decoder/config.json", toPath: dir + "/decoder/config.json")
        assertOutcome(try generate(dir, ["--decoder-steps", "100"]), .usage, ["--decoder-steps", "50"])
    }

    // MARK: Prompts

    func testPromptsEmptyLongEmojiAndRepairedUTF8AllDraw() throws {
        let long = String(repeating: "a red circle ", count: 800)  // 10,400 characters: truncated to 77 tokens
        let repaired = String(decoding: [0x61, 0xFF, 0xFE, 0x20, 0x63, 0xC3], as: UTF8.self)  // what argv decoding makes of invalid UTF-8
        for prompt in ["", long, "a 🔴 above a 🟦 👍🏽", repaired] {
            let out = try scratch().appendingPathComponent("p.png").path
            assertOutcome(["generate", prompt, "--model", Self.karlo, "-o", out] + Self.fast, .success)
            XCTAssertNoThrow(try RGBImage(contentsOf: URL(fileURLWithPath: out)))
        }
    }

    // MARK: Outputs

    func testOutputsThatCannotBeWrittenAreRefusedBeforeTheRun() throws {
        let dir = try scratch()
        assertOutcome(try generate(Self.karlo, output: dir.appendingPathComponent("no/such/folder/x.png").path), .cannotCreate, ["does not exist"])
        assertOutcome(try generate(Self.karlo, output: "/proc/unclip-test.png"), .cannotCreate, ["/proc"])  // read-only even for root
        if getuid() != 0 {
            let locked = dir.appendingPathComponent("locked")
            try FileManager.default.createDirectory(at: locked, withIntermediateDirectories: false)
            chmod(locked.path, 0o555)
            assertOutcome(try generate(Self.karlo, output: locked.appendingPathComponent("x.png").path), .cannotCreate, ["locked"])
        }
        assertOutcome(try generate(Self.karlo, output: dir.path), .cannotCreate, ["is a directory"])
        assertOutcome(try generate(Self.karlo, output: ""), .usage, ["empty"])
        // -n 2 into a grid path that is a directory: nothing is written, not even the numbered files beside it.
        let grid = dir.appendingPathComponent("grid")
        try FileManager.default.createDirectory(at: grid, withIntermediateDirectories: false)
        assertOutcome(try generate(Self.karlo, ["-n", "2"], output: grid.path), .cannotCreate, ["is a directory"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("grid-1.png").path))
    }

    func testAnOutputEqualToAnInputIsRefused() throws {
        let dir = try scratch()
        let image = dir.appendingPathComponent("in.png").path
        try FileManager.default.copyItem(atPath: Self.input, toPath: image)
        let before = try Data(contentsOf: URL(fileURLWithPath: image))
        let alias = dir.appendingPathComponent("alias.png").path
        try FileManager.default.createSymbolicLink(atPath: alias, withDestinationPath: image)
        assertOutcome(["vary", image, "--model", Self.variation, "-o", image], .usage, ["is the input"])
        assertOutcome(["vary", image, "--model", Self.variation, "-o", alias], .usage, ["is the input"])
        assertOutcome(["edit", image, "x", "--model", Self.karlo, "-o", image], .usage, ["is the input"])
        assertOutcome(["interpolate", image, Self.input, "--model", Self.variation, "-o", alias], .usage, ["is the input"])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: image)), before)
    }

    func testSymlinksFIFOsAndDevicesAreWrittenAsCpWouldWriteThem() throws {
        let dir = try scratch()
        // A symlink is followed: its target is replaced (atomically), the link stays a link.
        let target = dir.appendingPathComponent("target.png"), link = dir.appendingPathComponent("link.png")
        try Data("old".utf8).write(to: target)
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: target)
        assertOutcome(try generate(Self.karlo, output: link.path), .success)
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: link.path), target.path)
        XCTAssertNoThrow(try RGBImage(contentsOf: target))
        // A device is written into, not replaced.
        assertOutcome(try generate(Self.karlo, output: "/dev/null"), .success)
        var info = stat()
        XCTAssertEqual(stat("/dev/null", &info), 0)
        XCTAssertEqual(info.st_mode & S_IFMT, S_IFCHR)
        // A FIFO is written into: a reader gets the PNG, the FIFO stays a FIFO.
        let fifo = dir.appendingPathComponent("pipe.png").path
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        final class Received: @unchecked Sendable { var bytes = Data() }
        let received = Received(), done = expectation(description: "read the FIFO")
        Thread.detachNewThread {
            // A plain reader, as `cat pipe.png` would be (FileManager does not read FIFOs).
            let fd = open(fifo, O_RDONLY)
            var buffer = [UInt8](repeating: 0, count: 65536)
            while fd >= 0 {
                let n = read(fd, &buffer, buffer.count)
                if n <= 0 { break }
                received.bytes.append(contentsOf: buffer[..<n])
            }
            close(fd)
            done.fulfill()
        }
        assertOutcome(try generate(Self.karlo, output: fifo), .success)
        wait(for: [done], timeout: 60)
        XCTAssertNoThrow(try RGBImage(data: received.bytes))
        XCTAssertEqual(stat(fifo, &info), 0)
        XCTAssertEqual(info.st_mode & S_IFMT, S_IFIFO)
    }

    // MARK: Images

    func testBrokenImagesAreInputErrorsWithoutTheUsageLine() throws {
        let dir = try scratch()
        func file(_ name: String, _ bytes: [UInt8]) throws -> String {
            let url = dir.appendingPathComponent(name)
            try Data(bytes).write(to: url)
            return url.path
        }
        let png = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.input)))
        var huge = Array(png.prefix(33))
        huge.replaceSubrange(16..<24, with: [0, 1, 0x86, 0xA0, 0, 1, 0x86, 0xA0])  // 100000 × 100000
        let crc = crc32(huge[12..<29])
        huge.replaceSubrange(29..<33, with: [UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)])
        let cases: [(String, ExitStatus, [String])] = [
            (try file("empty.png", []), .dataError, ["empty.png", "empty"]),
            (try file("text.png", Array("hello".utf8)), .dataError, ["text.png", "not a PNG or JPEG"]),
            (try file("cut.png", Array(png.prefix(png.count / 2))), .dataError, ["cut.png", "cannot decode PNG"]),
            (try file("huge.png", huge + png.dropFirst(33)), .dataError, ["100000x100000", "limit"]),
            (dir.appendingPathComponent("missing.png").path, .noInput, ["missing.png", "no such file"]),
            (dir.path, .noInput, ["is a directory"]),
        ]
        for (path, status, needles) in cases {
            assertOutcome(["classify", path, "--model", Self.variation, "--labels", "a,b"], status, needles)
            assertOutcome(["vary", path, "--model", Self.variation], status, needles)
            assertOutcome(["edit", path, "x", "--model", Self.karlo, "-o", dir.appendingPathComponent("e.png").path], status, needles)
            XCTAssertNotEqual(status, .usage, "only usage errors print the Usage: line")
        }
    }

    func testOddButValidImagesAreAccepted() throws {
        let dir = try scratch()
        let one = dir.appendingPathComponent("one.png")
        try RGBImage(width: 1, height: 1, red: 200).writePNG(to: one)
        let files = [one.path] + ["gray.png", "palette.png", "rgb16.png", "rgba.png", "gray_alpha.png", "gray.jpg"]
            .map { Self.imageFixtures.appendingPathComponent($0).path }
        for path in files {
            assertOutcome(["classify", path, "--model", Self.variation, "--labels", "a,b"], .success)
        }
        assertOutcome(["vary", one.path, "--model", Self.variation, "-n", "1", "--ddim-steps", "2", "--super-res-steps", "2", "--quiet",
                       "-o", dir.appendingPathComponent("v.png").path], .success)
    }

    // MARK: Model directories

    func testModelDirectoriesThatCannotBeLoadedAreNamed() throws {
        assertOutcome(try generate("/nonexistent/model"), .noInput, ["/nonexistent/model"])
        assertOutcome(try generate(try scratch().path), .noInput, ["model_index.json"])
        let garbage = try model()
        try Data("{not json".utf8).write(to: URL(fileURLWithPath: garbage + "/model_index.json"))
        assertOutcome(try generate(garbage), .dataError, ["model_index.json", "not a JSON object"])
        assertOutcome(try generate(try model(editing: "model_index.json") { $0["prior"] = ["diffusers", "FancyPrior"] }), .dataError,
                      ["prior", "FancyPrior", "PriorTransformer"])
        assertOutcome(try generate(try model(editing: "model_index.json") { $0["decoder_schedular"] = ["diffusers", "UnCLIPScheduler"] }),
                      .dataError, ["decoder_schedular", "unknown component"])
        assertOutcome(try generate(try model(editing: "model_index.json") { $0["prior"] = "PriorTransformer" }), .dataError,
                      ["'prior'", "[library, class]"])
        assertOutcome(try generate(try model(editing: "text_encoder/config.json") { $0["hidden_size"] = "16" }), .dataError,
                      ["text_encoder/config.json", "hidden_size"])
    }

    func testConfigValuesNoModelCanHaveAreRefusedBeforeAllocating() throws {
        let cases: [(String, String, Any, [String])] = [
            ("text_encoder/config.json", "num_attention_heads", 0, ["num_attention_heads = 0", "divisor of hidden_size (16)"]),
            ("text_encoder/config.json", "num_attention_heads", 3, ["num_attention_heads = 3"]),
            ("text_encoder/config.json", "num_hidden_layers", -1, ["num_hidden_layers = -1"]),
            ("text_encoder/config.json", "num_hidden_layers", 1_000_000, ["num_hidden_layers = 1000000"]),
            ("text_encoder/config.json", "vocab_size", 10, ["vocab_size is 10"]),
            ("decoder/config.json", "attention_head_dim", 0, ["attention_head_dim = 0"]),
            ("decoder/config.json", "attention_head_dim", 3, ["attention_head_dim = 3", "block_out_channels"]),
            ("decoder/config.json", "norm_num_groups", 0, ["norm_num_groups = 0"]),
            ("decoder/config.json", "norm_num_groups", 3, ["norm_num_groups = 3", "divisor"]),
            ("decoder/config.json", "sample_size", 63, ["sample_size = 63", "multiple of 8"]),
            ("super_res_first/config.json", "norm_num_groups", 0, ["super_res_first", "norm_num_groups = 0"]),
            ("super_res_first/config.json", "in_channels", 4, ["super_res_first", "in_channels 4"]),
            ("prior/config.json", "num_attention_heads", 0, ["prior/config.json", "num_attention_heads = 0"]),
            ("prior/config.json", "num_embeddings", 64, ["num_embeddings is 64", "model_max_length 77"]),
            ("prior/config.json", "additional_embeddings", 5, ["additional_embeddings = 5"]),
            ("text_proj/config.json", "cross_attention_dim", 21, ["cross_attention_dim 21", "decoder's 20"]),
            ("text_proj/config.json", "clip_extra_context_tokens", 0, ["clip_extra_context_tokens = 0"]),
            ("tokenizer/tokenizer_config.json", "model_max_length", 100_000, ["tokenizer_config.json", "model_max_length is 100000"]),
            ("tokenizer/tokenizer_config.json", "model_max_length", 0, ["model_max_length is 0"]),
            ("prior_scheduler/scheduler_config.json", "num_train_timesteps", 1_000_000_000, ["num_train_timesteps"]),
        ]
        for (file, key, value, needles) in cases {
            let dir = try model(editing: file) { $0[key] = value }
            assertOutcome(try generate(dir), .dataError, needles)
        }
        // The image-variation pipeline's image processor and encoder.
        for (key, value, needles) in [("crop_size", 0, ["crop_size.height = 0"]), ("crop_size", 16, ["crop_size 16×16", "image_size"]),
                                      ("image_std", [0, 1, 1], ["image_std"])] as [(String, Any, [String])] {
            let dir = try model("tiny_variation", editing: "feature_extractor/preprocessor_config.json") { $0[key] = value }
            assertOutcome(["classify", Self.input, "--model", dir, "--labels", "a"], .dataError, ["preprocessor_config.json"] + needles)
        }
    }

    func testBrokenWeightFilesAreNamed() throws {
        /// A safetensors file from its header text and data size.
        func safetensors(_ header: String, data: Int = 16) -> Data {
            var length = UInt64(header.utf8.count).littleEndian
            return Data(bytes: &length, count: 8) + Data(header.utf8) + Data(count: data)
        }
        let shape = #""dtype":"F32","shape":[2,2]"#  // 16 bytes
        let cases: [(Data?, [String])] = [
            (nil, ["truncated"]),
            (Data([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]) + Data(count: 64), ["header", "limit"]),
            (safetensors("not json at all!"), ["invalid header"]),
            (safetensors(#"{"proj_in.weight":{"dtype":"I4","shape":[2,2],"data_offsets":[0,16]}}"#), ["proj_in.weight", "I4"]),
            (safetensors(#"{"proj_in.weight":{\#(shape),"data_offsets":[0,1000000]}}"#), ["proj_in.weight"]),
        ]
        for (bytes, needles) in cases {
            let dir = try model()
            let url = URL(fileURLWithPath: dir + "/prior/diffusion_pytorch_model.safetensors")
            let original = try Data(contentsOf: url)
            try (bytes ?? original.prefix(original.count / 2)).write(to: url)
            assertOutcome(try generate(dir), .dataError, ["prior"] + needles)
        }
        let dir = try priorWeights { $0["proj_in.weight"] = Tensor.zeros([2, 2]) }
        assertOutcome(try generate(dir), .dataError, ["prior", "proj_in.weight", "[2, 2]"])
    }

    /// A scratch model whose prior weights `edit` changed.
    func priorWeights(_ edit: (inout [String: Tensor]) -> Void) throws -> String {
        let dir = try model()
        let url = URL(fileURLWithPath: dir + "/prior/diffusion_pytorch_model.safetensors")
        let file = try SafeTensorsFile(contentsOf: url)
        var tensors: [String: Tensor] = [:]
        for name in file.names { tensors[name] = try file.tensor(name).clone() }
        edit(&tensors)
        try SafeTensors.write(tensors, to: url)
        return dir
    }

    func testNonFiniteWeightsAreRefusedNamingTheTensor() throws {
        for (value, shown) in [(Float.nan, "nan"), (Float.infinity, "inf")] {
            let dir = try priorWeights { $0["proj_in.weight"]!.data[3] = value }
            assertOutcome(try generate(dir), .dataError, ["prior", "proj_in.weight", shown, "element 3"])
        }
    }

    func testCorruptTokenizerFilesAreNamed() throws {
        let vocab = try model()
        try Data("[1, 2".utf8).write(to: URL(fileURLWithPath: vocab + "/tokenizer/vocab.json"))
        assertOutcome(try generate(vocab), .dataError, ["vocab.json"])
        let merges = try model()
        try Data("#version: 0.2\nonlyone\n".utf8).write(to: URL(fileURLWithPath: merges + "/tokenizer/merges.txt"))
        assertOutcome(try generate(merges), .dataError, ["merges.txt"])
        let gone = try model()
        try FileManager.default.removeItem(atPath: gone + "/tokenizer/vocab.json")
        assertOutcome(try generate(gone), .noInput, ["tokenizer"])
    }

    // MARK: Training data

    func testTrainingDataThatCannotBeUsedIsNamed() throws {
        let dir = try scratch()
        let out = dir.appendingPathComponent("out").path
        func train(_ data: String) -> [String] { ["train", "super_res", "--data", data, "--out", out] }
        assertOutcome(train(dir.appendingPathComponent("missing").path), .noInput, ["missing", "not a directory"])
        let empty = dir.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: false)
        assertOutcome(train(empty.path), .dataError, ["no .png"])
        let bad = dir.appendingPathComponent("bad")
        try FileManager.default.createDirectory(at: bad, withIntermediateDirectories: false)
        try Data([0x89, 0x50, 0x4E, 0x47, 1, 2]).write(to: bad.appendingPathComponent("corrupt.png"))
        try Data("a red circle".utf8).write(to: bad.appendingPathComponent("corrupt.txt"))
        try RGBImage(width: 8, height: 8).writePNG(to: bad.appendingPathComponent("blank.png"))
        try Data("  \n".utf8).write(to: bad.appendingPathComponent("blank.txt"))
        try RGBImage(width: 8, height: 8).writePNG(to: bad.appendingPathComponent("latin1.png"))
        try Data([0x63, 0xE9, 0xFF]).write(to: bad.appendingPathComponent("latin1.txt"))
        try RGBImage(width: 8, height: 8).writePNG(to: bad.appendingPathComponent("uncaptioned.png"))
        assertOutcome(train(bad.path), .dataError, ["none of its 4 images"])
        let scan = try FolderDataset(directory: bad).validEntries()
        XCTAssertEqual(scan.skipped.count, 4)
        XCTAssertTrue(scan.skipped.allSatisfy { !$0.hasPrefix("skipped") }, "\(scan.skipped)")  // printed after "skipping "
        XCTAssertTrue(scan.skipped.contains { $0.contains("latin1.txt") && $0.contains("UTF-8") }, "\(scan.skipped)")
    }

    // MARK: Exit statuses

    func testEveryStatusIsDocumentedInTheRootHelp() {
        let help = UnCLIPCommand.helpMessage()
        for status in ExitStatus.allCases { XCTAssertTrue(help.contains("\(status.rawValue)"), "\(status)") }
    }
}

extension XCTestCase {
    /// A new empty folder, removed after the test.
    func scratch() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }
}

/// CRC-32 of PNG chunks (for hand-made headers).
func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for b in bytes {
        crc ^= UInt32(b)
        for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return ~crc
}
