/// Anything that can list named tensors and produce one by name: a safetensors file, a dictionary, a checkpoint.
///
/// `shape(of:)` must be cheap (a header lookup) so loading can validate every key before reading any data.
public protocol WeightSource {
    /// Every tensor name the source holds.
    var names: [String] { get }
    /// The shape of the named tensor, or nil if the source has no such name.
    func shape(of name: String) -> [Int]?
    /// The named tensor (Float32), ideally viewing the source's memory without a copy.
    func tensor(_ name: String) throws -> Tensor
}

/// Why `Module.load` refused a set of weights. Nothing is assigned when loading fails.
public enum ModuleLoadingError: Error, CustomStringConvertible, Equatable {
    /// Keys in the source that no parameter of the module claims (the most common sign of a wrong tree or prefix).
    case unexpectedKeys([String], hint: String)
    /// Parameters of the module that the source does not provide.
    case missingKeys([String], hint: String)
    /// A key whose tensor in the source has another shape than the parameter.
    case shapeMismatch(key: String, expected: [Int], found: [Int])
    /// The source listed a name but could not produce its tensor.
    case unreadable(key: String, reason: String)
    /// A tensor holds NaN or ±∞, which would turn every image computed from it into NaN (an all-black PNG).
    case nonFinite(key: String, index: Int, value: Float)

    /// How many keys an error message lists before summarising the rest.
    static let listedKeyLimit = 10

    public var description: String {
        func list(_ keys: [String]) -> String {
            let shown = keys.prefix(Self.listedKeyLimit).map { "  \($0)" }.joined(separator: "\n")
            let more = keys.count > Self.listedKeyLimit ? "\n  … and \(keys.count - Self.listedKeyLimit) more" : ""
            return shown + more
        }
        switch self {
        case .unexpectedKeys(let keys, let hint):
            return "\(keys.count) unexpected key\(keys.count == 1 ? "" : "s") in the weights (no parameter has them):\n"
                + list(keys) + (hint.isEmpty ? "" : "\n\(hint)")
        case .missingKeys(let keys, let hint):
            return "\(keys.count) parameter\(keys.count == 1 ? "" : "s") missing from the weights:\n"
                + list(keys) + (hint.isEmpty ? "" : "\n\(hint)")
        case .shapeMismatch(let key, let expected, let found):
            return "shape mismatch for '\(key)': the module expects \(expected), the weights have \(found)"
        case .unreadable(let key, let reason):
            return "could not read '\(key)' from the weights: \(reason)"
        case .nonFinite(let key, let index, let value):
            return "tensor '\(key)' holds \(value) at element \(index); weights must be finite numbers"
        }
    }
}

extension Dictionary: WeightSource where Key == String, Value == Tensor {
    /// The keys, sorted (dictionary order is not deterministic).
    public var names: [String] { keys.sorted() }
    public func shape(of name: String) -> [Int]? { self[name]?.shape }
    public func tensor(_ name: String) throws -> Tensor {
        guard let t = self[name] else { throw ModuleLoadingError.unreadable(key: name, reason: "no such key") }
        return t
    }
}

extension Module {
    /// Loads every parameter from `weights`, strictly: each parameter must be present with its exact shape, and
    /// every name in `weights` must belong to a parameter unless `ignoring` returns true for it (buffers such as
    /// `text_model.embeddings.position_ids`).
    ///
    /// All keys and shapes are validated before anything is assigned, so a failed load leaves the module untouched;
    /// a tensor holding NaN or ±∞ is refused by name.
    /// Parameters take the source tensors' memory (`Tensor.assign`), so a memory-mapped file is not copied.
    public func load(_ weights: some WeightSource, ignoring: (String) -> Bool = { _ in false }) throws {
        let parameters = namedParameters()
        let expected = Set(parameters.map(\.0))
        let available = weights.names

        let unexpected = available.filter { !expected.contains($0) && !ignoring($0) }
        if !unexpected.isEmpty {
            throw ModuleLoadingError.unexpectedKeys(unexpected, hint: unexpectedHint(unexpected, parameters: parameters))
        }
        let availableSet = Set(available)
        let missing = parameters.map(\.0).filter { !availableSet.contains($0) }
        if !missing.isEmpty {
            throw ModuleLoadingError.missingKeys(missing, hint: missingHint(missing, available: available))
        }
        for (key, p) in parameters {
            let found = weights.shape(of: key) ?? []
            if found != p.shape { throw ModuleLoadingError.shapeMismatch(key: key, expected: p.shape, found: found) }
        }
        // Read everything before assigning anything: a read failure must not leave a half-loaded module.
        var loaded: [Tensor] = []
        loaded.reserveCapacity(parameters.count)
        for (key, p) in parameters {
            let t: Tensor
            do { t = try weights.tensor(key) } catch {
                throw ModuleLoadingError.unreadable(key: key, reason: "\(error)")
            }
            guard t.shape == p.shape else { throw ModuleLoadingError.shapeMismatch(key: key, expected: p.shape, found: t.shape) }
            if let i = t.firstNonFiniteIndex() { throw ModuleLoadingError.nonFinite(key: key, index: i, value: t.data[i]) }
            // The check read every page of a memory-mapped weight; hand them back (the file still has them), so a
            // load holds no more than the weights that the first step touches, in the form it keeps them.
            t.dropResidentPages()
            loaded.append(t)
        }
        for ((_, p), t) in zip(parameters, loaded) { p.assign(t) }
    }

    /// Every parameter by its checkpoint key (the tensors themselves, not copies), for saving.
    public func stateDict() -> [String: Tensor] {
        var dict: [String: Tensor] = [:]
        for (key, t) in namedParameters() { dict[key] = t }
        return dict
    }

    /// Explains unexpected keys: whether they look like a prefix problem, or which module lacks which parameter.
    private func unexpectedHint(_ unexpected: [String], parameters: [(String, Tensor)]) -> String {
        let expected = Set(parameters.map(\.0))
        // A whole-file prefix mismatch: "model.foo.weight" in the file for the key "foo.weight".
        if let first = unexpected.first {
            let parts = first.split(separator: ".")
            for k in 1..<max(parts.count, 1) where expected.contains(parts[k...].joined(separator: ".")) {
                let prefix = parts[..<k].joined(separator: ".")
                return "hint: the weights' names carry a prefix '\(prefix).' that the module's keys do not; strip it."
            }
        }
        // Name the deepest existing module each of the first few unexpected keys falls into.
        let modules = Dictionary(namedModules().map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
        var lines: [String] = []
        for key in unexpected.prefix(3) {
            var parts = key.split(separator: ".").map(String.init)
            let leaf = parts.removeLast()
            var path = parts
            while !path.isEmpty, modules[path.joined(separator: ".")] == nil { path.removeLast() }
            let modulePath = path.joined(separator: ".")
            if let m = modules[modulePath] {
                let type = String(describing: type(of: m))
                let rest = (parts.dropFirst(path.count) + [leaf]).joined(separator: ".")
                let own = m.ownParameters.map(\.0)
                lines.append("'\(key)': module '\(modulePath.isEmpty ? "<root>" : modulePath)' (\(type)) has no '\(rest)'"
                             + (own.isEmpty ? "" : "; its parameters are \(own)"))
            }
        }
        lines.append("pass `ignoring:` to skip buffers that are not parameters (e.g. position_ids).")
        return "hint: " + lines.joined(separator: "\nhint: ")
    }

    /// Explains missing keys by pointing at similarly named keys the weights do hold.
    private func missingHint(_ missing: [String], available: [String]) -> String {
        guard let first = missing.first else { return "" }
        let leaf = first.split(separator: ".").suffix(2).joined(separator: ".")
        let similar = available.filter { $0.hasSuffix(leaf) }.prefix(3)
        if similar.isEmpty { return "" }
        return "hint: the weights have similarly named keys: \(similar.joined(separator: ", "))"
    }
}

extension Tensor {
    /// The index of the first NaN or ±∞ element, nil when every element is finite: an exponent-bits test over the
    /// raw words in blocks, so scanning a checkpoint costs about one pass over its memory.
    public func firstNonFiniteIndex() -> Int? {
        let words = UnsafeRawPointer(data).assumingMemoryBound(to: UInt32.self)
        var start = 0
        while start < count {
            let end = Swift.min(start + 4096, count)
            var any: UInt32 = 0
            for i in start..<end { any |= (words[i] & 0x7F80_0000) == 0x7F80_0000 ? 1 : 0 }
            if any != 0 { return (start..<end).first { !data[$0].isFinite } }
            start = end
        }
        return nil
    }
}

/// The names of another source that start with `prefix`, with the prefix removed (load a sub-module from a full
/// checkpoint: `try encoder.load(file.scoped("text_model."))`).
public struct ScopedWeights<Base: WeightSource>: WeightSource {
    public let base: Base
    public let prefix: String

    public var names: [String] {
        base.names.filter { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
    }
    public func shape(of name: String) -> [Int]? { base.shape(of: prefix + name) }
    public func tensor(_ name: String) throws -> Tensor { try base.tensor(prefix + name) }
}

extension WeightSource {
    /// The tensors whose names start with `prefix`, named without it.
    public func scoped(_ prefix: String) -> ScopedWeights<Self> { ScopedWeights(base: self, prefix: prefix) }
}

// The safetensors readers serve `TensorSource`; their header lookup gives the shapes `load` validates first.
extension SafeTensorsFile: WeightSource {
    public func shape(of name: String) -> [Int]? { info(name)?.shape }
}

extension ShardedSafeTensors: WeightSource {
    public func shape(of name: String) -> [Int]? { info(name)?.shape }
}
