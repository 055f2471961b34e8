import UnCLIPImage
import UnCLIPNN

/// One caller's share of a generation batch that `UnCLIPModel` may run together with other callers' (a server's
/// requests): its prompts (one entry per image), its seed, and whether its caller still wants the images.
final class BatchMember: Sendable {
    let prompts: [String]
    let seed: UInt64
    /// The caller's settings with one image per prompt (the prompts are repeated instead).
    let options: SamplingOptions
    let progress: (@Sendable (PipelineProgress) -> Void)?
    private let state = Locked<(cancelled: Bool, result: Result<[RGBImage], any Error>?)>((false, nil))

    init(prompts: [String], options: SamplingOptions, seed: UInt64, progress: (@Sendable (PipelineProgress) -> Void)?) {
        self.prompts = prompts.flatMap { Array(repeating: $0, count: options.imagesPerPrompt) }
        var one = options
        one.imagesPerPrompt = 1
        self.options = one
        self.seed = seed
        self.progress = progress
    }

    var count: Int { prompts.count }
    var isCancelled: Bool { state.withLock { $0.cancelled } }
    func cancel() { state.withLock { $0.cancelled = true } }
    func finish(_ result: Result<[RGBImage], any Error>) { state.withLock { $0.result = result } }
    /// The images, if a batch led by another member has made them.
    var result: Result<[RGBImage], any Error>? { state.withLock { $0.result } }
}

/// Callers admitted and waiting for the model, in arrival order, from which a leader takes its batch.
struct BatchQueue: ~Copyable {
    private let members = Locked<[BatchMember]>([])

    func append(_ member: BatchMember) { members.withLock { $0.append(member) } }

    func remove(_ member: BatchMember) { members.withLock { $0.removeAll { $0 === member } } }

    /// Puts the members of a batch that did not finish back at the front, in their order.
    func putBack(_ batch: [BatchMember]) { members.withLock { $0.insert(contentsOf: batch, at: 0) } }

    /// `leader` and, in arrival order, the waiting members with the same settings that fit beside it within
    /// `maxImages`; all taken out of the queue. The leader is always in, however many images it asks for.
    func batch(ledBy leader: BatchMember, maxImages: Int) -> [BatchMember] {
        members.withLock { queue in
            var batch = [leader], images = leader.count
            for m in queue where m !== leader && !m.isCancelled && m.options == leader.options && images + m.count <= maxImages {
                batch.append(m)
                images += m.count
            }
            queue.removeAll { m in batch.contains { $0 === m } }
            return batch
        }
    }
}

/// The noise of a shared batch: each member's rows drawn from its own seed exactly as if it ran alone (the draw for
/// the batch is the members' draws stacked along the batch axis), so a request's seed means the same images whether
/// or not the server ran it beside others.
struct StackedNoise: NoiseSource {
    private var parts: [(noise: SeededNoise, rows: Int)]
    private let rows: Int

    init(_ members: [BatchMember]) {
        parts = members.map { (SeededNoise(seed: $0.seed), $0.count) }
        rows = members.reduce(0) { $0 + $1.count }
    }

    mutating func noise(stage: Stage, index: Int, shape: [Int]) throws -> Tensor {
        try stacked(shape) { noise, shape in try noise.noise(stage: stage, index: index, shape: shape) }
    }

    mutating func noise(stage: Stage, auxiliary stream: AuxiliaryNoise, index: Int, shape: [Int]) throws -> Tensor {
        try stacked(shape) { noise, shape in try noise.noise(stage: stage, auxiliary: stream, index: index, shape: shape) }
    }

    private mutating func stacked(_ shape: [Int], _ draw: (inout SeededNoise, [Int]) throws -> Tensor) throws -> Tensor {
        guard shape.first == rows else {
            throw PipelineArgumentError("a shared batch of \(rows) images was asked for noise of shape \(shape): its first axis must be the batch")
        }
        var pieces: [Tensor] = []
        for i in parts.indices { pieces.append(try draw(&parts[i].noise, [parts[i].rows] + shape.dropFirst())) }
        return pieces.count == 1 ? pieces[0] : Tensor.concat(pieces, axis: 0)
    }
}
