import ArgumentParser
import Foundation
import UnCLIPModels

/// The `unclip` command-line tool (a library target, so tests drive it in-process; the executable only calls `main`).
public struct UnCLIPCommand: ParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        commandName: "unclip",
        abstract: "unCLIP (DALL·E 2) in Swift: text → CLIP → prior → decoder → super-resolution.",
        discussion: """
            `unclip generate "a red circle above a blue square"` draws with the embedded ShapesWorld model; \
            `--model DIR` uses any diffusers-layout unCLIP directory (e.g. Karlo). `edit` repaints the transparent \
            (or --mask'ed) region of an image to fit a prompt (inpainting, RePaint). `vary`, `interpolate` and \
            `textdiff` are the paper's image manipulations (on DDIM-inverted latents), `classify` is zero-shot CLIP. \
            `unclip train all` trains a model from scratch, `unclip evaluate` scores it, `unclip selftest` checks \
            the engine on this machine.

            Exit status: 0 success; 64 usage error (a bad option or value, an output equal to an input); 65 malformed \
            input data (a config value no model can have, corrupt weights, a broken image, tokenizer or training \
            data); 66 an input that does not exist or cannot be read; 73 an output that cannot be created (missing \
            or read-only folder, a directory, an empty name); 130 training interrupted by Ctrl-C after its checkpoint \
            (continue with --resume); 1 any other failure. docs/reliability.md lists the bad inputs and their answers.
            """,
        subcommands: commands)

    /// The subcommands; `serve` with the package's Server trait on (its default).
    static var commands: [any ParsableCommand.Type] {
        #if Server
        [Generate.self, Edit.self, Serve.self, Vary.self, Interpolate.self, TextDiff.self, Classify.self, Inspect.self, DataCommand.self, Train.self, Evaluate.self, SelfTest.self, Bench.self]
        #else
        [Generate.self, Edit.self, Vary.self, Interpolate.self, TextDiff.self, Classify.self, Inspect.self, DataCommand.self, Train.self, Evaluate.self, SelfTest.self, Bench.self]
        #endif
    }

    /// Runs the command, first making libgomp's idle threads sleep instead of spin unless the user chose a policy.
    ///
    /// oneDNN and the engine share libgomp's pool. With the default policy its workers spin after every parallel
    /// region; when anything else wants the two cores (another process, a build) each of the thousands of small
    /// regions in a sampling run then waits for a descheduled spinner, which multiplies the run time
    /// (docs/benchmarks-karlo.md, "Noise"). libgomp reads OMP_WAIT_POLICY once, when it loads, so the process
    /// re-executes itself with it set.
    /// Benchmarks keep the caller's environment, so they compare with PyTorch under the same policy.
    public static func main() {
        #if os(Linux)
        let arguments = CommandLine.arguments
        if getenv("OMP_WAIT_POLICY") == nil, arguments.count > 1, arguments[1] != "bench" {
            setenv("OMP_WAIT_POLICY", "PASSIVE", 1)
            execv("/proc/self/exe", CommandLine.unsafeArgv)  // returns only if it failed; then run as we are
        }
        #endif
        do {
            var command = try parseAsRoot(nil)
            try command.run()
        } catch {
            exit(reporting: error)
        }
    }
}

/// OMP_NUM_THREADS when set, else 2 (the machine's cores, and what peer_torch.py uses).
let defaultBenchThreads = ProcessInfo.processInfo.environment["OMP_NUM_THREADS"].flatMap { Int($0) } ?? 2

/// Benchmarks that print one JSON line per measurement.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks printing JSON lines ({name, median_s, min_s, max_s, ...}).",
        subcommands: [Ops.self, Karlo.self, Peak.self])

    /// `--reps` and `--threads` of the op-level benchmarks.
    struct Repetitions: ParsableArguments {
        @Option(help: "Timed repetitions per case (after one warm-up).")
        var reps = 5

        @Option(help: "Threads for the engine and oneDNN (default: OMP_NUM_THREADS, else 2).")
        var threads = defaultBenchThreads

        func validate() throws {
            guard reps >= 1 else { throw ValidationError("--reps must be at least 1 (got \(reps))") }
            guard threads >= 1 else { throw ValidationError("--threads must be at least 1 (got \(threads))") }
        }
    }

    struct Ops: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Op timings with the same names as `peer_torch.py ops`, for side-by-side ratios.")

        @OptionGroup var options: Repetitions

        func run() throws { try runOpsBenchmark(reps: options.reps, threads: options.threads) }
    }

    struct Peak: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The fp32 and bf16 throughput of this host's best oneDNN kernels (a 2048³ matrix product, a 3 × 3 convolution), to set a step's GFLOP/s against; the best of the repetitions is reported.")

        @OptionGroup var options: Repetitions

        func run() throws { try runPeakBenchmark(reps: options.reps, threads: options.threads) }
    }

    struct Karlo: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "One step of each full-size Karlo component (random weights), named as `peer_torch.py karlo` prints.",
            discussion: "Needs about 12 GiB of memory for the largest component (and, with --weights mapped, temporary disk space for its weights: up to 4.1 GB for the prior); peak RSS is reported per line.")

        @Option(parsing: .upToNextOption, help: "Components to time (default: all).")
        var components: [String] = []

        @Option(help: "Timed repetitions per component (after one warm-up).")
        var reps = 3

        @Option(help: "Threads for the engine and oneDNN (default: OMP_NUM_THREADS, else 2).")
        var threads = defaultBenchThreads

        @Option(help: ArgumentHelp("Arithmetic of convolutions and matrix products (auto: bf16 where the CPU has it).", valueName: "fp32|bf16|auto"))
        var precision: PrecisionChoice = .fp32

        @Flag(help: "At bf16, also run one fp32 step after the timing and report the bf16 output's error against it.")
        var compareFP32 = false

        @Option(help: ArgumentHelp("Where the random weights live: mapped = written to a temporary safetensors file and memory-mapped back, as a loaded model's (peak RSS then covers the load and the steps); heap = as built.", valueName: "mapped|heap"))
        var weights: BenchWeights = .mapped

        func validate() throws {
            guard reps >= 1 else { throw ValidationError("--reps must be at least 1 (got \(reps))") }
            guard threads >= 1 else { throw ValidationError("--threads must be at least 1 (got \(threads))") }
            if precision == .bf16 && !Precision.hardwareSupportsBF16 {
                throw ValidationError("--precision bf16: this CPU has no bf16 dot-product instructions (AVX-512 BF16 or AMX); use fp32 or auto")
            }
        }

        func run() throws {
            try runKarloBenchmark(components: components.isEmpty ? karloComponents : components, reps: reps, threads: threads,
                                  precision: precision.resolved(), compareFP32: compareFP32, weights: weights)
        }
    }
}
