/// A neural-network component whose parameters and sub-modules are its stored properties.
///
/// As in MLXNN, the property labels **are** the checkpoint keys: a subclass declares
///
/// ```swift
/// final class Attention: Module {
///     let to_q: Linear, to_k: Linear, to_v: Linear
///     let to_out: [Module]          // "to_out.0" (Linear), "to_out.1" (Dropout)
///     var norm_cross: LayerNorm?    // absent when nil
/// }
/// ```
///
/// and `namedParameters()` yields `to_q.weight`, `to_q.bias`, …, `to_out.0.weight` by reflection (`Mirror`) over
/// the stored properties, in declaration order (base-class properties first). The rules:
///
/// * a `Tensor` property is a parameter named by its label; a `Tensor?` that is nil is absent;
/// * a `Module` property (or a non-nil `Module?`) is a child whose parameters are prefixed by `label.`;
/// * an array of modules (`[Linear]`, `[Module]`, …) holds children named `label.0`, `label.1`, … — indices count
///   every element, parameter-less ones included, exactly like `torch.nn.ModuleList` / `Sequential`;
/// * an array of tensors holds parameters `label.0`, `label.1`, … (like `torch.nn.ParameterList`);
/// * anything else (numbers, configuration, RNGs, closures) is ignored.
///
/// Labels that cannot be Swift identifiers are renamed by overriding `keyOverrides`; tensors that are buffers,
/// not parameters (a causal mask, a cached table), are excluded by `nonParameterLabels`. Properties wrapped by
/// `lazy` or a property wrapper are stored under a mangled label and are therefore never discovered; declare
/// parameters as plain `let`/`var`. A module must not store a reference to its parent (the walk would not end).
///
/// Discovery costs about 10 µs per module (Mirror), so hot loops should keep the parameter list they need
/// (optimizers do) rather than call `parameters()` every step.
open class Module {
    /// Whether the module is in training mode (dropout active). New modules train, as in PyTorch; model loaders
    /// call `eval()` like diffusers' `from_pretrained`.
    public private(set) var training = true

    public init() {}

    // MARK: Customisation points

    /// Checkpoint keys for property labels that differ from them (label → key), e.g. `["linear1": "0"]`.
    open var keyOverrides: [String: String] { [:] }

    /// Labels of `Tensor` properties that are buffers, not parameters: they are neither loaded, saved nor trained.
    open var nonParameterLabels: Set<String> { [] }

    /// Re-initialises this module's own parameters (not its children's) the way PyTorch's constructor does.
    ///
    /// Layers override it; the default leaves parameters unchanged. Called for every module by
    /// `resetParameters(using:)`.
    open func resetOwnParameters(using rng: inout Philox) {}

    // MARK: Reflection

    /// One discovered entry: a parameter or a child module, under its key (relative to this module).
    enum Entry {
        case parameter(Tensor)
        case module(Module)
    }

    /// This module's direct parameters and children, in declaration order, keyed as in the checkpoint.
    func entries() -> [(key: String, entry: Entry)] {
        // Mirror lists only the dynamic class's own stored properties; walk the superclass chain up to (not
        // including) Module and emit base-class properties first, matching declaration order.
        var mirrors: [Mirror] = []
        var mirror: Mirror? = Mirror(reflecting: self)
        while let m = mirror, m.subjectType != Module.self {
            mirrors.append(m)
            mirror = m.superclassMirror
        }
        let overrides = keyOverrides
        let excluded = nonParameterLabels
        var result: [(key: String, entry: Entry)] = []
        for m in mirrors.reversed() {
            for child in m.children {
                guard let label = child.label, !excluded.contains(label) else { continue }
                let key = overrides[label] ?? label
                let value = child.value
                // `as?` unwraps a non-nil Optional inside `Any`, so `Tensor?` and `Module?` need no extra case.
                if let t = value as? Tensor {
                    result.append((key, .parameter(t)))
                } else if let m = value as? Module {
                    result.append((key, .module(m)))
                } else if let ms = value as? [Module] {
                    for (i, m) in ms.enumerated() { result.append(("\(key).\(i)", .module(m))) }
                } else if let ts = value as? [Tensor] {
                    for (i, t) in ts.enumerated() { result.append(("\(key).\(i)", .parameter(t))) }
                }
            }
        }
        return result
    }

    /// The direct sub-modules with their keys, in declaration order.
    public var children: [(String, Module)] {
        entries().compactMap { key, entry in
            if case .module(let m) = entry { return (key, m) }
            return nil
        }
    }

    /// This module's own parameters (not its children's) with their keys, in declaration order.
    public var ownParameters: [(String, Tensor)] {
        entries().compactMap { key, entry in
            if case .parameter(let t) = entry { return (key, t) }
            return nil
        }
    }

    /// Every module of the tree with its dotted path, this module first (path ""), depth-first in declaration order.
    public func namedModules() -> [(String, Module)] {
        var result: [(String, Module)] = []
        func visit(_ module: Module, _ path: String) {
            result.append((path, module))
            for (key, child) in module.children { visit(child, path.isEmpty ? key : "\(path).\(key)") }
        }
        visit(self, "")
        return result
    }

    /// Every parameter with its dotted checkpoint key (`down_blocks.1.attentions.0.to_q.weight`), in declaration order.
    ///
    /// A tensor shared by two modules appears under both keys, as in a PyTorch state dict.
    public func namedParameters() -> [(String, Tensor)] {
        var result: [(String, Tensor)] = []
        func visit(_ module: Module, _ prefix: String) {
            for (key, entry) in module.entries() {
                switch entry {
                case .parameter(let t): result.append((prefix + key, t))
                case .module(let m): visit(m, prefix + key + ".")
                }
            }
        }
        visit(self, "")
        return result
    }

    /// Every distinct parameter tensor, in declaration order (a shared tensor once, like `nn.Module.parameters()`).
    public func parameters() -> [Tensor] {
        var seen = Set<ObjectIdentifier>()
        return namedParameters().compactMap { seen.insert(ObjectIdentifier($0.1)).inserted ? $0.1 : nil }
    }

    /// The parameters that gradients flow to, with their keys (shared tensors once): what an optimizer updates.
    public func trainableParameters() -> [(String, Tensor)] {
        var seen = Set<ObjectIdentifier>()
        return namedParameters().filter { $0.1.requiresGrad && seen.insert(ObjectIdentifier($0.1)).inserted }
    }

    /// Number of scalar parameters (shared tensors counted once).
    public var parameterCount: Int { parameters().reduce(0) { $0 + $1.count } }

    // MARK: Modes and gradients

    /// Puts this module and all its descendants in training mode.
    public func train(_ on: Bool = true) {
        for (_, m) in namedModules() { m.training = on }
    }

    /// Puts this module and all its descendants in evaluation mode (dropout becomes the identity).
    public func eval() { train(false) }

    /// Sets `requiresGrad` on every parameter (`requires_grad_`); `false` freezes the module.
    public func requiresGrad(_ flag: Bool = true) {
        for p in parameters() { p.requiresGrad = flag }
    }

    /// Declares every parameter's current values final (inference): their storages become read-only
    /// (`TensorStorage.isReadOnly`), so derived copies such as reordered and bf16 weights are reused without
    /// re-checking the values on each call. Model loaders call it. Training such a module later is fine: an optimizer
    /// first gives each parameter a writable copy of its own; writing the read-only memory in place is not.
    public func markParametersReadOnly() {
        for p in parameters() { p.storage.markReadOnly() }
    }

    /// Drops every parameter's accumulated gradient (PyTorch's `zero_grad(set_to_none=True)`).
    public func zeroGrad() {
        for p in parameters() { p.grad = nil }
    }

    /// Re-initialises every parameter of the tree with its layer's PyTorch default initialisation.
    ///
    /// Modules are visited in `namedModules()` order, so a given seed gives the same weights every time (not the
    /// same numbers as PyTorch, whose generator differs).
    public func resetParameters(using rng: inout Philox) {
        withNoGrad {
            for (_, m) in namedModules() { m.resetOwnParameters(using: &rng) }
        }
    }
}
