/// Whether operations record the graph for differentiation.
///
/// A task-local value, so concurrent tasks (two requests sharing one loaded model, a training run beside a server)
/// each have their own mode; code outside any task gets a per-thread value. Inference (sampling, the CLI, the server)
/// runs inside `withNoGrad`; training turns recording on.
public enum GradMode {
    @TaskLocal public static var isEnabled = true
}

/// Runs `body` without recording a graph.
@discardableResult
public func withNoGrad<T>(_ body: () throws -> T) rethrows -> T {
    try GradMode.$isEnabled.withValue(false, operation: body)
}

/// Runs `body` recording the graph.
@discardableResult
public func withGrad<T>(_ body: () throws -> T) rethrows -> T {
    try GradMode.$isEnabled.withValue(true, operation: body)
}

/// The backward rule of one recorded operation.
///
/// `backward(gradOutput, output)` returns one gradient per input (nil for inputs that need none). A returned
/// gradient may have the shape of the broadcast result; the engine sums it back to the input's shape.
public final class GradFunction {
    public let name: String
    public let inputs: [Tensor]
    public let backward: (_ gradOutput: Tensor, _ output: Tensor) -> [Tensor?]

    init(name: String, inputs: [Tensor], backward: @escaping (Tensor, Tensor) -> [Tensor?]) {
        self.name = name
        self.inputs = inputs
        self.backward = backward
    }
}

extension Tensor {
    /// Attaches a backward rule to this freshly computed output if recording is on and an input needs a gradient.
    ///
    /// Every differentiable op ends with `return out.recorded("name", inputs) { g, out in [...] }`, its backward
    /// rule written next to its forward kernel.
    @inline(__always)
    public func recorded(_ name: String, _ inputs: [Tensor],
                         _ backward: @escaping (_ g: Tensor, _ out: Tensor) -> [Tensor?]) -> Tensor {
        guard GradMode.isEnabled, inputs.contains(where: { $0.requiresGrad }) else { return self }
        requiresGrad = true
        gradFn = GradFunction(name: name, inputs: inputs, backward: backward)
        return self
    }

    /// Reverse-mode differentiation from this tensor.
    ///
    /// `gradient` defaults to ones (a scalar loss). Leaf tensors with `requiresGrad` accumulate into `grad`.
    /// The recorded graph is released afterwards, as PyTorch does without `retain_graph`.
    public func backward(_ gradient: Tensor? = nil, retainGraph: Bool = false) {
        precondition(requiresGrad, "backward() on a tensor that does not require grad")
        let seed = gradient ?? Tensor.ones(shape)
        precondition(seed.shape == shape, "backward: gradient shape \(seed.shape) for output \(shape)")

        // Topological order by iterative depth-first search.
        var order: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Tensor, Bool)] = [(self, false)]
        while let (t, expanded) = stack.popLast() {
            if expanded { order.append(t); continue }
            if !visited.insert(ObjectIdentifier(t)).inserted { continue }
            stack.append((t, true))
            for input in t.gradFn?.inputs ?? [] where input.requiresGrad && !visited.contains(ObjectIdentifier(input)) {
                stack.append((input, false))
            }
        }

        withNoGrad {
            var grads: [ObjectIdentifier: Tensor] = [ObjectIdentifier(self): seed]
            for t in order.reversed() {
                guard let g = grads.removeValue(forKey: ObjectIdentifier(t)) else { continue }
                guard let fn = t.gradFn else {
                    // A leaf: accumulate.
                    if let existing = t.grad { t.grad = existing + g } else { t.grad = g.shape == t.shape ? g.clone() : g.reshaped(t.shape).clone() }
                    continue
                }
                let inputGrads = fn.backward(g, t)
                precondition(inputGrads.count == fn.inputs.count, "\(fn.name): \(inputGrads.count) gradients for \(fn.inputs.count) inputs")
                for (input, ig) in zip(fn.inputs, inputGrads) {
                    guard input.requiresGrad, let ig else { continue }
                    let reduced = ig.summed(toShape: input.shape)
                    let key = ObjectIdentifier(input)
                    if let existing = grads[key] { grads[key] = existing + reduced } else { grads[key] = reduced }
                }
                if !retainGraph { t.gradFn = nil }
            }
        }
    }

    /// Sums a broadcast gradient back to `target` (the reverse of broadcasting).
    public func summed(toShape target: [Int]) -> Tensor {
        if shape == target { return self }
        if count == target.reduce(1, *) { return reshaped(target) }
        precondition(rank >= target.count, "cannot reduce \(shape) to \(target)")
        let lead = rank - target.count
        var axes = Array(0..<lead)
        for (i, n) in target.enumerated() where n == 1 && shape[lead + i] != 1 { axes.append(lead + i) }
        return sum(axes: axes, keepDims: true).reshaped(target)
    }
}
