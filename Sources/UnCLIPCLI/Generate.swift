import ArgumentParser
import Foundation
import UnCLIPModels
import UnCLIPImage

/// `unclip generate`: text → image.
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw images from a text prompt: CLIP text encoder → prior → decoder → upsamplers.",
        discussion: """
            Defaults are diffusers' UnCLIPPipeline defaults (prior 25 steps, decoder 25, super-resolution 7; guidance \
            4.0 and 8.0) unless the model directory's unclip_defaults.json says otherwise (the embedded model: prior \
            guidance 2, decoder guidance 3). --size picks where the upsampler cascade stops: the embedded model \
            draws 128 × 128 by default and 512 × 512 with --size 512 (its second upsampler, 128 → 512). With \
            --noise, the recorded draws of a reference run are replayed, reproducing its image.
            """)

    @Argument(help: "The caption to draw.")
    var prompt: String

    @OptionGroup var model: ModelOptions
    @OptionGroup var sampling: SamplingArguments
    @OptionGroup var prior: PriorArguments

    @Option(name: .shortAndLong, help: "Output PNG (with -n > 1: a grid, plus numbered files beside it).")
    var output = "unclip.png"

    @Flag(help: "Print where the time went (start-up, reading the model directory, each component's loading and stage, writing) to stderr.")
    var timings = false

    @Option(help: ArgumentHelp("Which decoder draws: unclip (the CLIP image embedding from the prior, and the caption) or glide (the model's GLIDE-style baseline, glide_decoder: the caption alone; no prior runs).", valueName: "unclip|glide"))
    var decoder: DecoderKind = .unclip

    func validate() throws {
        if decoder == .glide && (prior.prior != .diffusion || prior.priorCandidates != 1 || prior.priorGuidance != nil || prior.priorSteps != nil) {
            throw ValidationError("--decoder glide runs no prior: the prior options (--prior, --prior-candidates, --prior-guidance, --prior-steps) do not apply")
        }
    }

    func run() throws {
        let report = timings ? TimingReport() : nil
        try OutputPlan.images(at: output, count: sampling.n).check(inputs: [sampling.noise])
        let pipeline = try model.pipeline()
        report?.mark("reading the model directory")
        if let report { pipeline.timing = report.component }
        var options = try prior.applied(to: try sampling.options(for: pipeline), in: pipeline)
        options.decoder = decoder
        if decoder == .glide && !pipeline.hasBaselineDecoder {
            throw ValidationError("--decoder glide: \(pipeline.name) has no GLIDE-style decoder (no glide_decoder folder); train one with `unclip train decoder --out DIR --conditioning caption`")
        }
        var noise = try sampling.noiseSource()
        let progress = StageProgress(quiet: sampling.quiet)
        let start = Date()
        report?.mark("checking options")
        let images = try pipeline.generate(prompts: [prompt], options: options, noise: &noise, progress: progress.handle)
        report?.markOutsideComponents()
        let files = try writeImages(images, to: output)
        report?.mark("writing PNG")
        print("wrote \(files.joined(separator: ", ")) in \(ProgressBar.format(Date().timeIntervalSince(start)))")
        report?.print()
    }
}

/// `--timings`: the seconds of each phase of one command, printed to stderr at the end.
final class TimingReport {
    private let clock = ContinuousClock()
    private var last: ContinuousClock.Instant
    private var lines: [String] = []
    private var componentSeconds = 0.0

    init() {
        last = clock.now
        if let age = processAge() { lines.append(String(format: "start-up (process start → command) %.3f s", age)) }
    }

    private func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }

    /// Seconds since the last mark.
    private func lap() -> Double {
        let now = clock.now
        defer { last = now }
        return seconds(now - last)
    }

    /// The phase that ended now.
    func mark(_ phase: String) { lines.append(String(format: "%@ %.3f s", phase, lap())) }

    /// The pipeline run that ended now, less what its components reported (their lines are already in).
    func markOutsideComponents() {
        let s = lap() - componentSeconds
        lines.append(String(format: "tokenizer, conditioning and sampler arithmetic outside the components %.3f s", max(s, 0)))
    }

    /// A pipeline's report of one component's load and stage.
    func component(_ name: String, load: Double, run: Double) {
        componentSeconds += load + run
        lines.append(String(format: "%@: load %.3f s, stage %.3f s", name, load, run))
    }

    func print() {
        FileHandle.standardError.write(Data(("timings:\n" + lines.map { "  " + $0 }.joined(separator: "\n") + "\n").utf8))
    }

    /// Seconds since this process started (Linux: /proc/self/stat's start time against /proc/uptime); nil elsewhere.
    private func processAge() -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let uptime = try? String(contentsOfFile: "/proc/uptime", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        // Fields after the command name (which may contain spaces): state is field 3, starttime field 22.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let ticks = Double(fields[19]), let up = Double(uptime.split(separator: " ")[0]) else { return nil }
        return up - ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
