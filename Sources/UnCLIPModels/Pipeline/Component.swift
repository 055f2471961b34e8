/// One component of a pipeline: given in code and held, or loaded from its folder when a stage needs it and released
/// afterwards unless the pipeline keeps its components loaded (Karlo's 3.4 B parameters never sit in memory at once).
public final class Component<Value> {
    /// The component's name in its pipeline directory (`prior`, `super_res_first`, …).
    public let name: String
    private let loader: (() throws -> Value)?
    private var value: Value?

    /// A component given in code: always in memory.
    public init(_ value: Value, name: String) {
        self.name = name
        self.value = value
        loader = nil
    }

    /// A component loaded by `load` when first used.
    public init(name: String, load: @escaping () throws -> Value) {
        self.name = name
        loader = load
    }

    /// Runs `body` with the component, loading it first if needed; `keep` keeps a loaded one for the next use.
    func use<R>(keep: Bool, _ body: (Value) throws -> R) throws -> R {
        if let value { return try body(value) }
        let loaded = try loader!()
        if keep { value = loaded }
        return try body(loaded)
    }

    /// Drops a loaded component (one given in code stays).
    func release() { if loader != nil { value = nil } }
}
