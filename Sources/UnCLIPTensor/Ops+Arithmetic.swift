// Broadcasting arithmetic: each op's backward rule sits next to its forward kernel.
// Gradients come back in the broadcast shape; `backward()` sums them to each input's shape.

extension Tensor {
    public static func + (a: Tensor, b: Tensor) -> Tensor {
        if let blocked = blockedSum(a, b) { return blocked }  // a residual sum of convolution outputs (inference)
        return broadcastBinary(a, b, +).recorded("add", [a, b]) { g, _ in [g, g] }
    }

    public static func - (a: Tensor, b: Tensor) -> Tensor {
        broadcastBinary(a, b, -).recorded("sub", [a, b]) { g, _ in [g, b.requiresGrad ? -g : nil] }
    }

    public static func * (a: Tensor, b: Tensor) -> Tensor {
        broadcastBinary(a, b, *).recorded("mul", [a, b]) { g, _ in
            [a.requiresGrad ? g * b : nil, b.requiresGrad ? g * a : nil]
        }
    }

    public static func / (a: Tensor, b: Tensor) -> Tensor {
        broadcastBinary(a, b, /).recorded("div", [a, b]) { g, _ in
            [a.requiresGrad ? g / b : nil, b.requiresGrad ? -(g * a / (b * b)) : nil]
        }
    }

    public static prefix func - (a: Tensor) -> Tensor {
        mapUnary(a, -).recorded("neg", [a]) { g, _ in [-g] }
    }

    // Scalars on either side.
    public static func + (a: Tensor, s: Float) -> Tensor {
        mapUnary(a) { $0 + s }.recorded("add_scalar", [a]) { g, _ in [g] }
    }
    public static func + (s: Float, a: Tensor) -> Tensor { a + s }
    public static func - (a: Tensor, s: Float) -> Tensor { a + (-s) }
    public static func - (s: Float, a: Tensor) -> Tensor {
        mapUnary(a) { s - $0 }.recorded("rsub_scalar", [a]) { g, _ in [-g] }
    }
    public static func * (a: Tensor, s: Float) -> Tensor {
        mapUnary(a) { $0 * s }.recorded("mul_scalar", [a]) { g, _ in [g * s] }
    }
    public static func * (s: Float, a: Tensor) -> Tensor { a * s }
    public static func / (a: Tensor, s: Float) -> Tensor { a * (1 / s) }
}
