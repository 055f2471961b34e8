// The engine's random numbers: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC'11; the Random123 reference) with Box–Muller normals, computed with integer arithmetic and our own
// polynomial log/sin/cos so that one seed gives the same bits on every machine and thread count.
//
// Construction, exactly:
// * key   = (seed & 0xFFFF_FFFF, seed >> 32)
// * block b of stream s is Philox4x32-10(counter: (b & 0xFFFF_FFFF, b >> 32, s & 0xFFFF_FFFF, s >> 32), key),
//   four 32-bit words w[4b], …, w[4b + 3] of the stream's word sequence.
// * Tensor fills start at the generator's next unused block (a partly used block is skipped) and use
//   ⌈count/4⌉ blocks: element i of `rand` is (w[i] >> 8)·2⁻²⁴ in [0, 1); elements 2j and 2j + 1 of `randn`
//   are r·cos θ and r·sin θ with r = √(−2 ln u₁), θ = 2π·u₂, u₁ = ((w[2j] >> 8) + 1)·2⁻²⁴ in (0, 1] and
//   u₂ = (w[2j + 1] >> 8)·2⁻²⁴ in [0, 1).
//
// This is not torch's generator (CPU mt19937); reproducing PyTorch's noise goes through noise injection.

/// A counter-based random generator: Philox4x32-10, keyed by a 64-bit seed, with 2⁶⁴ independent streams.
///
/// Every 128-bit block is a pure function of (seed, stream, block index), so tensor fills run in parallel and
/// any position can be reached in O(1) (`skip(blocks:)`).
public struct Philox: RandomNumberGenerator, Equatable, Sendable {
    /// The 64-bit key.
    public let seed: UInt64
    /// The stream (high half of the counter); generators with different streams are independent.
    public let stream: UInt64
    /// The index of the next block not yet handed out.
    public private(set) var blockIndex: UInt64 = 0
    private var buffer = SIMD4<UInt32>()
    private var bufferUsed = 4  // words of `buffer` already consumed; 4 = empty

    /// A generator for `seed` on stream `stream`, at block 0.
    public init(seed: UInt64, stream: UInt64 = 0) {
        self.seed = seed
        self.stream = stream
    }

    /// The Philox4x32-10 bijection of one 128-bit counter under a 64-bit key (the Random123 function).
    public static func block(counter: SIMD4<UInt32>, key: SIMD2<UInt32>) -> SIMD4<UInt32> {
        var c = counter
        var k0 = key[0], k1 = key[1]
        for round in 0..<10 {
            let p0 = UInt64(0xD251_1F53) &* UInt64(c[0])
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(c[2])
            c = SIMD4(UInt32(truncatingIfNeeded: p1 >> 32) ^ c[1] ^ k0, UInt32(truncatingIfNeeded: p1),
                      UInt32(truncatingIfNeeded: p0 >> 32) ^ c[3] ^ k1, UInt32(truncatingIfNeeded: p0))
            if round < 9 { k0 &+= 0x9E37_79B9; k1 &+= 0xBB67_AE85 }  // Weyl key schedule
        }
        return c
    }

    /// Block `index` of this generator's stream (does not advance the generator).
    @inline(__always)
    public func block(at index: UInt64) -> SIMD4<UInt32> {
        Philox.block(counter: SIMD4(UInt32(truncatingIfNeeded: index), UInt32(truncatingIfNeeded: index >> 32),
                                    UInt32(truncatingIfNeeded: stream), UInt32(truncatingIfNeeded: stream >> 32)),
                     key: SIMD2(UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32)))
    }

    /// The next 32-bit word of the stream.
    public mutating func nextUInt32() -> UInt32 {
        if bufferUsed == 4 { buffer = block(at: blockIndex); blockIndex &+= 1; bufferUsed = 0 }
        defer { bufferUsed += 1 }
        return buffer[bufferUsed]
    }

    /// The next 64 bits: two words, the first in the low half.
    public mutating func next() -> UInt64 {
        let lo = UInt64(nextUInt32())
        return lo | UInt64(nextUInt32()) << 32
    }

    /// Skips `blocks` whole blocks (4 words each), dropping any partly used block first.
    public mutating func skip(blocks: UInt64) {
        bufferUsed = 4
        blockIndex &+= blocks
    }

    /// Hands out `count` fresh consecutive blocks for a bulk fill and returns the first one's index.
    mutating func takeBlocks(_ count: Int) -> UInt64 {
        bufferUsed = 4
        let first = blockIndex
        blockIndex &+= UInt64(count)
        return first
    }
}

extension Tensor {
    /// Uniform samples in [0, 1) with 24 random bits each.
    public static func rand(_ shape: [Int], using rng: inout Philox) -> Tensor {
        let out = Tensor(uninitializedShape: shape)
        let n = out.count, blocks = (n + 3) / 4
        let first = rng.takeBlocks(blocks)
        let generator = rng, dst = out.data
        parallelFor(blocks, grain: 4096) { r in
            for b in r {
                let w = generator.block(at: first &+ UInt64(b))
                for k in 0..<Swift.min(4, n - 4 * b) { dst[4 * b + k] = Float(w[k] >> 8) * 0x1p-24 }
            }
        }
        return out
    }

    /// Standard normal samples (Box–Muller on Philox words; see the construction at the top of Random.swift).
    public static func randn(_ shape: [Int], using rng: inout Philox) -> Tensor {
        let out = Tensor(uninitializedShape: shape)
        let n = out.count, blocks = (n + 3) / 4
        let first = rng.takeBlocks(blocks)
        let generator = rng, dst = out.data
        // Groups of 4 blocks = 16 words = 8 Box–Muller pairs = 16 normals.
        let groups = (blocks + 3) / 4
        parallelFor(groups, grain: 1024) { r in
            for gi in r {
                var w1 = SIMD8<UInt32>(), w2 = SIMD8<UInt32>()
                for j in 0..<4 {
                    let w = generator.block(at: first &+ UInt64(gi * 4 + j))
                    w1[2 * j] = w[0]; w2[2 * j] = w[1]; w1[2 * j + 1] = w[2]; w2[2 * j + 1] = w[3]
                }
                let (z0, z1) = boxMuller(w1, w2)
                let base = gi * 16
                if base + 16 <= n {
                    for j in 0..<8 { dst[base + 2 * j] = z0[j]; dst[base + 2 * j + 1] = z1[j] }
                } else {
                    for j in 0..<8 {
                        if base + 2 * j < n { dst[base + 2 * j] = z0[j] }
                        if base + 2 * j + 1 < n { dst[base + 2 * j + 1] = z1[j] }
                    }
                }
            }
        }
        return out
    }
}

/// Two standard normals (r·cos θ, r·sin θ) per pair of words; deterministic arithmetic only.
@inline(__always)
func boxMuller(_ w1: SIMD8<UInt32>, _ w2: SIMD8<UInt32>) -> (SIMD8<Float>, SIMD8<Float>) {
    let u1 = SIMD8<Float>((w1 &>> 8) &+ 1) * 0x1p-24  // (0, 1]: ln stays finite
    let u2 = SIMD8<Float>(w2 &>> 8) * 0x1p-24         // [0, 1)
    let r = (VectorMath.log8(u1) * -2).squareRoot()
    let (s, c) = sinCosTwoPi(u2)
    return (r * c, r * s)
}

/// sin(2πu) and cos(2πu) for u in [0, 1), within about 2 ulp of the true values.
///
/// The quadrant comes from u itself (u − q/4 is exact), then Cephes `sinf`/`cosf` polynomials on [−π/4, π/4].
@inline(__always)
func sinCosTwoPi(_ u: SIMD8<Float>) -> (sin: SIMD8<Float>, cos: SIMD8<Float>) {
    typealias V = SIMD8<Float>
    typealias I = SIMD8<Int32>
    let magic = V(repeating: 12_582_912)
    let qf = u * 4 + magic
    let q = unsafeBitCast(qf, to: I.self) &- unsafeBitCast(magic, to: I.self)  // round(4u) in 0...4
    let t = u - (qf - magic) * 0.25                                            // [−1/8, 1/8], exact
    let a = t * 6.283_185_307_179_586
    let z = a * a
    let s = a + a * z * ((z * -1.951_529_589_1e-4 + 8.332_160_873_6e-3) * z - 1.666_665_461_1e-1)
    let c = 1 - z * 0.5 + z * z * ((z * 2.443_315_711_809_948e-5 - 1.388_731_625_493_765e-3) * z + 4.166_664_568_298_827e-2)
    // Rotate by q quarter turns: odd q swaps sin and cos; q ∈ {2, 3} negates sin, q ∈ {1, 2} negates cos.
    let swap = I(repeating: 0) &- (q & 1)
    let sb = unsafeBitCast(s, to: I.self), cb = unsafeBitCast(c, to: I.self)
    let sinBits = ((swap & cb) | (~swap & sb)) ^ ((q & 2) &<< 30)
    let cosBits = ((swap & sb) | (~swap & cb)) ^ (((q &+ 1) & 2) &<< 30)
    return (unsafeBitCast(sinBits, to: V.self), unsafeBitCast(cosBits, to: V.self))
}
