// Elementwise unary ops. Each op's backward rule sits next to its forward kernel; the kernels run 16 lanes at a
// time (`SIMD16<Float>`) over contiguous memory, spread over the cores with `parallelFor`.
//
// exp, tanh, erf and log are our own branch-free polynomial approximations (`VectorMath`) rather than libm calls:
// libm's scalar calls do not vectorise, and pure +, −, ×, ÷ arithmetic gives the same bits on every machine
// (the RNG relies on that). Their measured worst errors against Double are pinned in UnaryOpsTests.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which formula `gelu` uses.
public enum GELUApproximation: Sendable {
    /// x·Φ(x) with the exact error function (PyTorch `F.gelu(x)`, approximate="none").
    case none
    /// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (PyTorch approximate="tanh").
    case tanh
}

// MARK: - Vector math

/// Branch-free single-precision approximations of exp, log, tanh and erf on 16 lanes.
///
/// Only IEEE +, −, ×, ÷ and bit operations are used (no FMA, no libm), so results are identical on every machine.
enum VectorMath {
    typealias V = SIMD16<Float>
    typealias I = SIMD16<Int32>

    @inline(__always) static func bits(_ v: V) -> I { unsafeBitCast(v, to: I.self) }
    @inline(__always) static func float(_ v: I) -> V { unsafeBitCast(v, to: V.self) }

    /// eˣ with about 1 ulp error; exact 0 below −104, +∞ above 88.73, NaN propagates.
    ///
    /// Cody–Waite reduction x = n·ln2 + r (|r| ≤ ln2/2), Cephes `expf` polynomial for eʳ, and 2ⁿ applied as two
    /// factors so that subnormal results and overflow to ∞ come out right.
    @inline(__always) static func exp(_ x: V) -> V {
        // (Compare-and-replace: `clamped(lowerBound:upperBound:)` does not vectorise.)
        var xc = x.replacing(with: -104, where: x .< -104)
        xc = xc.replacing(with: 89, where: xc .> 89)
        // Round x·log2(e) to the nearest integer with the 1.5·2²³ trick; its low mantissa bits then hold n.
        let magic = V(repeating: 12_582_912)
        let t = xc * 1.442_695_04 + magic
        let n = t - magic
        var r = xc - n * 0.693_359_375
        r = r - n * -2.121_944_4e-4
        let r2 = r * r
        var p = V(repeating: 1.987_569_15e-4)
        p = p * r + 1.398_199_95e-3
        p = p * r + 8.333_451_9e-3
        p = p * r + 4.166_579_59e-2
        p = p * r + 1.666_666_55e-1
        p = p * r + 5.000_000_12e-1
        p = p * r2 + r + 1
        // 2ⁿ as 2^(n/2) · 2^(n − n/2); both factors stay normal for n in [−150, 129].
        let ni = bits(t) &- bits(magic)
        let n1 = ni &>> 1, n2 = ni &- n1
        let s1 = float((n1 &+ 127) &<< 23), s2 = float((n2 &+ 127) &<< 23)
        let y = p * s1 * s2
        return y.replacing(with: x, where: x .!= x)
    }

    /// ln x with about 1 ulp error; −∞ at 0, NaN below 0, +∞ at +∞.
    @inline(__always) static func log(_ x: V) -> V {
        // Eight lanes at a time: with sixteen the optimiser runs out of SSE registers and scalarises the polynomial.
        V(lowHalf: log8(x.lowHalf), highHalf: log8(x.highHalf))
    }

    /// ln x on eight lanes: x = 2ᵉ·m with m in [√½, √2), Cephes `logf` polynomial in m − 1.
    @inline(__always) static func log8(_ x: SIMD8<Float>) -> SIMD8<Float> {
        typealias V = SIMD8<Float>
        typealias I = SIMD8<Int32>
        func bits(_ v: V) -> I { unsafeBitCast(v, to: I.self) }
        func float(_ v: I) -> V { unsafeBitCast(v, to: V.self) }
        // Subnormal inputs: scale by 2²³ first. Masks are applied as bit patterns: lane selects here make the
        // optimiser scalarise the polynomial below.
        let tiny = unsafeBitCast(x .< V(repeating: 0x1p-126), to: I.self)  // −1 or 0 per lane
        let scale = float((tiny & bits(V(repeating: 8_388_608))) | (~tiny & bits(V(repeating: 1))))
        let xs = x * scale
        // Split x = 2ᵉ·m with m in [√½, √2) by integer arithmetic alone (musl's trick).
        let offset = I(repeating: 0x3F35_04F3)  // bits of √½
        let tmp = bits(xs) &- offset
        let e = (tmp &>> 23) &- (tiny & 23)
        let m = float(bits(xs) &- (tmp & I(repeating: Int32(bitPattern: 0xFF80_0000)))) - 1
        // Int32 → Float through the 1.5·2²³ trick (a plain `V(e)` conversion does not vectorise).
        let ef = float(e &+ bits(V(repeating: 12_582_912))) - 12_582_912
        let z = m * m
        var y = m * 7.037_683_629_2e-2 - 1.151_461_031_0e-1
        y = y * m + 1.167_699_874_0e-1
        y = y * m - 1.242_014_084_6e-1
        y = y * m + 1.424_932_278_7e-1
        y = y * m - 1.666_805_766_5e-1
        y = y * m + 2.000_071_476_5e-1
        y = y * m - 2.499_999_399_3e-1
        y = y * m + 3.333_333_117_4e-1
        y = y * m * z
        y = y + ef * -2.121_944_4e-4
        y = y - z * 0.5
        var r = m + y
        r = r + ef * 0.693_359_375
        r = r.replacing(with: V(repeating: -.infinity), where: x .== V(repeating: 0))
        r = r.replacing(with: V(repeating: .nan), where: x .< V(repeating: 0))
        r = r.replacing(with: x, where: (x .== V(repeating: .infinity)) .| (x .!= x))
        return r
    }

    /// tanh x with about 2 ulp error.
    ///
    /// |x| < 0.625: Cephes `tanhf` odd polynomial (no cancellation near 0); otherwise 1 − 2/(e^{2|x|} + 1).
    @inline(__always) static func tanh(_ x: V) -> V {
        let ax = abs(x)
        let s = x * x
        var p = V(repeating: -5.704_988_727_45e-3)
        p = p * s + 2.063_908_879_54e-2
        p = p * s - 5.373_971_555_31e-2
        p = p * s + 1.333_144_220_36e-1
        p = p * s - 3.333_328_194_22e-1
        let small = p * s * x + x
        let big = 1 - 2 / (exp(ax + ax) + 1)
        let signed = float(bits(big) | (bits(x) & I(repeating: Int32(bitPattern: 0x8000_0000))))
        return signed.replacing(with: small, where: ax .< V(repeating: 0.625))
    }

    /// erf x, faithfully rounded in exact arithmetic (Norbert Juffa's `erff` minimax polynomials); without FMA
    /// the measured error stays within about 2 ulp.
    @inline(__always) static func erf(_ x: V) -> V {
        let t = abs(x)
        let s = x * x
        // |x| ≤ 0.927734375: odd polynomial.
        var p = V(repeating: -5.967_617_03e-4)
        p = p * s + 4.991_194_23e-3
        p = p * s - 2.676_813_49e-2
        p = p * s + 1.128_199_25e-1
        p = p * s - 3.761_253_36e-1
        p = p * s + 1.283_791_66e-1
        let inner = p * x + x
        // Otherwise 1 − exp(poly(|x|)).
        var r = t * -1.728_534_70e-5 + 3.831_971_26e-4
        let u = t * -3.883_964_38e-3 + 2.425_462_19e-2
        r = r * s + u
        r = r * t - 1.067_778_77e-1
        r = r * t - 6.348_466_87e-1
        r = r * t - 1.287_175_12e-1
        r = r * t - t
        let outerMagnitude = 1 - exp(r)
        let outer = float(bits(outerMagnitude) | (bits(x) & I(repeating: Int32(bitPattern: 0x8000_0000))))
        return outer.replacing(with: inner, where: t .<= V(repeating: 0.927_734_375))
    }

    /// The logistic function 1/(1 + e⁻ˣ).
    @inline(__always) static func sigmoid(_ x: V) -> V { 1 / (1 + exp(-x)) }

    @inline(__always) static func abs(_ x: V) -> V {
        float(bits(x) & I(repeating: 0x7FFF_FFFF))
    }
}

// MARK: - Kernels

@inline(__always) func loadV(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
}

@inline(__always) func storeV(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self)
}

/// Runs `f` over `n` elements 16 at a time (a zero-padded final block), in parallel.
///
/// `body(i, k)` handles elements i..<i+k with k ≤ 16; full blocks get k = 16.
@inline(__always)
func forEachBlock16(_ n: Int, grain: Int, _ body: (_ i: Int, _ k: Int) -> Void) {
    let blocks = (n + 15) / 16
    parallelFor(blocks, grain: Swift.max(1, grain / 16)) { r in
        for b in r { let i = b * 16; body(i, Swift.min(16, n - i)) }
    }
}

@inline(__always) func loadPartial(_ p: UnsafePointer<Float>, _ k: Int) -> SIMD16<Float> {
    if k == 16 { return loadV(p) }
    var v = SIMD16<Float>(repeating: 0)
    for j in 0..<k { v[j] = p[j] }
    return v
}

@inline(__always) func storePartial(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>, _ k: Int) {
    if k == 16 { storeV(v, p); return }
    for j in 0..<k { p[j] = v[j] }
}

/// A new tensor holding `f` applied to `a` 16 lanes at a time.
///
/// `grain` is the element count below which the loop stays on one thread: smaller for costly `f`.
@inline(__always)
func mapVector(_ a: Tensor, grain: Int = 16_384, _ f: (SIMD16<Float>) -> SIMD16<Float>) -> Tensor {
    let out = Tensor(uninitializedShape: a.shape)
    let pa = a.data, po = out.data
    forEachBlock16(a.count, grain: grain) { i, k in storePartial(f(loadPartial(pa + i, k)), po + i, k) }
    return out
}

/// A new tensor holding `f(a, b)` for two same-shaped tensors, 16 lanes at a time.
@inline(__always)
func zipVector(_ a: Tensor, _ b: Tensor, grain: Int = 16_384,
               _ f: (SIMD16<Float>, SIMD16<Float>) -> SIMD16<Float>) -> Tensor {
    precondition(a.count == b.count, "elementwise kernel: \(a.shape) vs \(b.shape)")
    let out = Tensor(uninitializedShape: a.shape)
    let pa = a.data, pb = b.data, po = out.data
    forEachBlock16(a.count, grain: grain) { i, k in
        storePartial(f(loadPartial(pa + i, k), loadPartial(pb + i, k)), po + i, k)
    }
    return out
}

// MARK: - Ops

extension Tensor {
    /// eˣ elementwise.
    public func exp() -> Tensor {
        mapVector(self, grain: 8192, VectorMath.exp).recorded("exp", [self]) { g, out in
            [zipVector(g, out, *)]
        }
    }

    /// Natural logarithm elementwise (−∞ at 0, NaN below 0).
    public func log() -> Tensor {
        mapVector(self, grain: 8192, VectorMath.log).recorded("log", [self]) { g, _ in
            [zipVector(g, self, /)]
        }
    }

    /// √x elementwise.
    public func sqrt() -> Tensor {
        mapVector(self) { $0.squareRoot() }.recorded("sqrt", [self]) { g, out in
            [zipVector(g, out) { g, y in g * 0.5 / y }]
        }
    }

    /// 1/√x elementwise.
    public func rsqrt() -> Tensor {
        // Matches PyTorch's CPU rsqrt: 1 / sqrt(x), correctly rounded division of a correctly rounded root.
        mapVector(self) { 1 / $0.squareRoot() }.recorded("rsqrt", [self]) { g, out in
            [zipVector(g, out) { g, y in g * -0.5 * y * y * y }]
        }
    }

    /// xᵖ elementwise (C `powf` semantics: negative bases need an integral `p`).
    public func pow(_ p: Float) -> Tensor {
        let out: Tensor
        switch p {
        case 1: out = mapVector(self) { $0 }
        case 2: out = mapVector(self) { $0 * $0 }
        case 3: out = mapVector(self) { $0 * $0 * $0 }
        case 0.5: out = mapVector(self) { $0.squareRoot() }
        case -1: out = mapVector(self) { 1 / $0 }
        default:
            out = Tensor(uninitializedShape: shape)
            let src = data, dst = out.data
            parallelFor(count, grain: 4096) { r in for i in r { dst[i] = powf(src[i], p) } }
        }
        return out.recorded("pow", [self]) { g, _ in
            [p == 2 ? zipVector(g, self) { g, x in g * 2 * x } : g * p * self.pow(p - 1)]
        }
    }

    /// Hyperbolic tangent elementwise.
    public func tanh() -> Tensor {
        mapVector(self, grain: 8192, VectorMath.tanh).recorded("tanh", [self]) { g, out in
            [zipVector(g, out) { g, y in g * (1 - y * y) }]
        }
    }

    /// The logistic function 1/(1 + e⁻ˣ) elementwise.
    public func sigmoid() -> Tensor {
        mapVector(self, grain: 8192, VectorMath.sigmoid).recorded("sigmoid", [self]) { g, out in
            [zipVector(g, out) { g, y in g * y * (1 - y) }]
        }
    }

    /// max(x, 0) elementwise.
    public func relu() -> Tensor {
        // `.zero.replacing(with:where:)` keeps NaN as NaN, as PyTorch's relu does.
        mapVector(self) { $0.replacing(with: 0, where: $0 .< 0) }.recorded("relu", [self]) { g, _ in
            [zipVector(g, self) { g, x in SIMD16<Float>(repeating: 0).replacing(with: g, where: x .> 0) }]
        }
    }

    /// SiLU (swish): x·σ(x) elementwise.
    public func silu() -> Tensor {
        mapVector(self, grain: 8192) { $0 * VectorMath.sigmoid($0) }.recorded("silu", [self]) { g, _ in
            [zipVector(g, self, grain: 8192) { g, x in
                let s = VectorMath.sigmoid(x)
                return g * s * (1 + x * (1 - s))
            }]
        }
    }

    /// Gaussian error linear unit, exact (erf) or with PyTorch's tanh approximation.
    public func gelu(approximate: GELUApproximation = .none) -> Tensor {
        switch approximate {
        case .none:
            // Matches PyTorch F.gelu(approximate="none"): x * 0.5 * (1 + erf(x / √2)).
            return mapVector(self, grain: 8192) { x in x * 0.5 * (1 + VectorMath.erf(x * 0.707_106_781_186_547_5)) }
                .recorded("gelu", [self]) { g, _ in
                    [zipVector(g, self, grain: 8192) { g, x in
                        let cdf = 0.5 * (1 + VectorMath.erf(x * 0.707_106_781_186_547_5))
                        let pdf = VectorMath.exp(x * x * -0.5) * 0.398_942_280_401_432_7  // 1/√(2π)
                        return g * (cdf + x * pdf)
                    }]
                }
        case .tanh:
            // Matches PyTorch F.gelu(approximate="tanh"): 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))).
            let beta: Float = 0.797_884_560_802_865_4, kappa: Float = 0.044_715
            return mapVector(self, grain: 8192) { x in
                0.5 * x * (1 + VectorMath.tanh(beta * (x + kappa * x * x * x)))
            }.recorded("gelu_tanh", [self]) { g, _ in
                [zipVector(g, self, grain: 8192) { g, x in
                    let x2 = x * x
                    let th = VectorMath.tanh(beta * (x + kappa * x2 * x))
                    let left = 0.5 * (1 + th)
                    let right = 0.5 * x * (1 - th * th) * beta * (1 + 3 * kappa * x2)
                    return g * (left + right)
                }]
            }
        }
    }

    /// QuickGELU, x·σ(1.702x) (CLIP's activation).
    public func quickGELU() -> Tensor {
        mapVector(self, grain: 8192) { $0 * VectorMath.sigmoid(1.702 * $0) }.recorded("quick_gelu", [self]) { g, _ in
            [zipVector(g, self, grain: 8192) { g, x in
                let s = VectorMath.sigmoid(1.702 * x)
                return g * s * (1 + 1.702 * x * (1 - s))
            }]
        }
    }

    /// |x| elementwise.
    public func abs() -> Tensor {
        mapVector(self, VectorMath.abs).recorded("abs", [self]) { g, _ in
            // Matches PyTorch: the gradient is sign(x), 0 at x = 0.
            [zipVector(g, self) { g, x in
                let zero = SIMD16<Float>(repeating: 0)
                return zero.replacing(with: g, where: x .> 0).replacing(with: -g, where: x .< 0)
            }]
        }
    }

    /// Each element limited to [min, max].
    public func clamped(min lo: Float, max hi: Float) -> Tensor {
        precondition(lo <= hi, "clamped: min \(lo) exceeds max \(hi)")
        return mapVector(self) { x in
            // NaN stays NaN, as in torch.clamp.
            x.replacing(with: lo, where: x .< lo).replacing(with: hi, where: x .> hi)
        }.recorded("clamp", [self]) { g, _ in
            // Matches PyTorch clamp_backward: the gradient passes where min ≤ x ≤ max (boundaries included).
            [zipVector(g, self) { g, x in
                SIMD16<Float>(repeating: 0).replacing(with: g, where: (x .>= lo) .& (x .<= hi))
            }]
        }
    }
}
