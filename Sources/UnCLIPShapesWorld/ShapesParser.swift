import Foundation
import UnCLIPImage

/// An object found in an image by `ShapesParser`; geometry in canvas units (pixels of the 128 × 128 canvas).
public struct DetectedObject: Equatable, Sendable, CustomStringConvertible {
    /// The palette colour the object's pixels are nearest to.
    public var color: ShapeColor
    /// The shape whose template fits the object best.
    public var shape: ShapeKind
    /// The fitted shape's centre (cx, cy) (spec geometry: for a triangle, the middle of its bounding box).
    public var cx: Double
    public var cy: Double
    /// The area centroid, weighted by coverage.
    public var centroidX: Double
    public var centroidY: Double
    /// The fitted size `s` (diameter, side, or bar length).
    public var size: Double
    /// The covered area (coverage-weighted pixel count), canvas pixels².
    public var area: Double
    /// The component's pixel bounding box in image pixels, half-open: [minX, maxX) × [minY, maxY).
    public var minX: Int, minY: Int, maxX: Int, maxY: Int
    /// The mismatch between the object and its fitted template, Σ|m − t| / Σ(m + t): 0 is a perfect fit, 1 disjoint.
    public var fitError: Double
    /// The Gaussian blur (σ, image pixels) of the best-fitting template: 0 for a crisp render.
    public var blur: Double = 0

    /// The size class the fitted size falls in.
    public var sizeClass: SizeClass { SizeClass(measuredSize: size) }

    public var description: String {
        func f(_ v: Double) -> String { String((v * 10).rounded() / 10) }
        return "\(color.name) \(shape.name) s=\(f(size)) at (\(f(cx)), \(f(cy))) fit \(f(fitError * 100))%"
    }
}

/// Parses an RGB image back into ShapesWorld objects (spec §"Checking a generated image").
///
/// 1. Each pixel is projected onto the six lines from white to a palette colour; the line with the smallest residual
///    gives its colour, the position along it its coverage c (0 = white, 1 = full fill). Anti-aliased edges are
///    blends of fill and white, so they lie on their colour's line and keep their colour; c ≥ `foregroundCoverage`
///    marks the pixel as part of an object, which recovers the shape's outline at half coverage.
/// 2. 8-connected regions of foreground pixels of one colour are objects, unless smaller than
///    `minimumAreaFraction` of the image (noise, stray fringes of generated images).
/// 3. The shape is the template (circle, square, triangle, cross, drawn with the renderer's geometry) that best
///    matches the object's coverage map, each template placed at the object's centroid and sized to its area; the
///    comparison runs at the image's own resolution, so a 32 × 32 image is judged against 32 × 32 templates, and
///    also against Gaussian-blurred templates (σ up to 1.1 px), so that a soft generated image is not read as rounder
///    shapes. The fitted template gives the object's centre (cx, cy), which for a triangle is s/6 above its
///    centroid; relations are judged on these centres, the geometry the spec's relations are defined on.
///
/// Any resolution works; thresholds are fractions of the image, geometry is reported in canvas units.
public struct ShapesParser: Sendable {
    /// Coverage at or above which a pixel belongs to an object.
    public var foregroundCoverage: Double
    /// Coverage below which a non-object pixel counts as empty when matching templates (suppresses faint noise).
    public var noiseFloor: Double
    /// Regions smaller than this fraction of the image's pixels are ignored (65 px at 128², 4 px at 32²; the
    /// smallest ShapesWorld object, a triangle of s = 22, covers 242 px at 128²).
    public var minimumAreaFraction: Double

    public init(foregroundCoverage: Double = 0.5, noiseFloor: Double = 0.15, minimumAreaFraction: Double = 0.004) {
        self.foregroundCoverage = foregroundCoverage
        self.noiseFloor = noiseFloor
        self.minimumAreaFraction = minimumAreaFraction
    }

    /// The objects in `image`, ordered by position (top to bottom, then left to right, by pixel bounding box).
    public func parse(_ image: RGBImage) -> [DetectedObject] {
        let w = image.width, h = image.height, n = w * h
        guard n > 0 else { return [] }
        let (best, coverage) = classifyPixels(image)
        let threshold = Float(foregroundCoverage)

        // Connected components of same-colour foreground pixels (8-connectivity), by flood fill.
        var component = [Int32](repeating: -1, count: n)
        var regions: [[Int]] = []
        var stack: [Int] = []
        for start in 0..<n where coverage[start] >= threshold && component[start] < 0 {
            let id = Int32(regions.count), colour = best[start]
            var members: [Int] = []
            component[start] = id
            stack.append(start)
            while let p = stack.popLast() {
                members.append(p)
                let px = p % w, py = p / w
                for ny in max(0, py - 1)...min(h - 1, py + 1) {
                    for nx in max(0, px - 1)...min(w - 1, px + 1) {
                        let q = ny * w + nx
                        if component[q] < 0 && best[q] == colour && coverage[q] >= threshold {
                            component[q] = id
                            stack.append(q)
                        }
                    }
                }
            }
            regions.append(members)
        }

        let minimumPixels = max(2, Int((minimumAreaFraction * Double(n)).rounded()))
        var objects: [DetectedObject] = []
        for (id, members) in regions.enumerated() where members.count >= minimumPixels {
            objects.append(describe(members, id: Int32(id), colour: best[members[0]], best: best, coverage: coverage,
                                    component: component, width: w, height: h))
        }
        return objects.sorted { ($0.minY, $0.minX) < ($1.minY, $1.minX) }
    }

    /// Each pixel's nearest white-to-palette line (colour index) and its coverage along that line, clamped to [0, 1].
    func classifyPixels(_ image: RGBImage) -> (best: [UInt8], coverage: [Float]) {
        let n = image.width * image.height
        // Directions from white to each fill: a pixel of coverage c is white − c · d.
        let directions: [SIMD4<Float>] = ShapeColor.allCases.map {
            let (r, g, b) = $0.rgb
            return SIMD4(255 - Float(r), 255 - Float(g), 255 - Float(b), 0)
        }
        let inverseNorms = directions.map { 1 / ($0 * $0).sum() }
        var best = [UInt8](repeating: 0, count: n)
        var coverage = [Float](repeating: 0, count: n)
        image.pixels.withUnsafeBufferPointer { px in
            for i in 0..<n {
                let v = SIMD4<Float>(255 - Float(px[3 * i]), 255 - Float(px[3 * i + 1]), 255 - Float(px[3 * i + 2]), 0)
                var bestResidual = Float.infinity, bestIndex = 0, bestCoverage: Float = 0
                for k in 0..<directions.count {
                    let c = min(max((v * directions[k]).sum() * inverseNorms[k], 0), 1)
                    let r = v - c * directions[k]
                    let residual = (r * r).sum()
                    if residual < bestResidual { bestResidual = residual; bestIndex = k; bestCoverage = c }
                }
                best[i] = UInt8(bestIndex)
                coverage[i] = bestCoverage
            }
        }
        return (best, coverage)
    }

    /// Measures one region and fits the four shape templates to it.
    private func describe(_ members: [Int], id: Int32, colour: UInt8, best: [UInt8], coverage: [Float],
                          component: [Int32], width w: Int, height h: Int) -> DetectedObject {
        let scaleX = Double(ShapesWorld.canvasSize) / Double(w), scaleY = Double(ShapesWorld.canvasSize) / Double(h)
        var minX = w, minY = h, maxX = 0, maxY = 0
        for p in members {
            let x = p % w, y = p / w
            minX = min(minX, x); maxX = max(maxX, x + 1); minY = min(minY, y); maxY = max(maxY, y + 1)
        }
        // The object's soft mask over its box plus a margin (2 canvas px, at least 2 image px so that the fringe a
        // blur spreads is kept): its own pixels, and faint same-colour fringe pixels that belong to no other object.
        let padX = max(2, Int((2 / scaleX).rounded(.up))), padY = max(2, Int((2 / scaleY).rounded(.up)))
        let wx0 = max(0, minX - padX), wx1 = min(w, maxX + padX), wy0 = max(0, minY - padY), wy1 = min(h, maxY + padY)
        let floor = Float(noiseFloor)
        func mass(_ x: Int, _ y: Int) -> Double {
            let p = y * w + x
            if component[p] == id { return Double(coverage[p]) }
            if component[p] < 0 && best[p] == colour && coverage[p] >= floor { return Double(coverage[p]) }
            return 0
        }
        var total = 0.0, sumX = 0.0, sumY = 0.0
        for y in wy0..<wy1 {
            for x in wx0..<wx1 {
                let m = mass(x, y)
                total += m; sumX += m * (Double(x) + 0.5); sumY += m * (Double(y) + 0.5)
            }
        }
        let centroidX = sumX / total * scaleX, centroidY = sumY / total * scaleY
        let area = total * scaleX * scaleY

        // Templates are sampled finely enough that each image pixel sees at least 4 × 4 canvas-pixel samples' worth.
        let samples = min(16, max(4, Int((4 * max(scaleX, scaleY)).rounded())))
        let perPixel = Double(samples * samples)
        var bestFit: (shape: ShapeKind, error: Double, s: Double, cx: Double, cy: Double, blur: Double)?
        for shape in ShapeKind.allCases {
            let s = shape.size(area: area)
            let cx = centroidX, cy = centroidY - s * shape.centroidOffset
            // Template box in image pixels, merged with the object's window and widened by the blur kernel's reach.
            let r = Self.blurRadius
            let tx0 = max(0, min(wx0, Int(((cx - s / 2) / scaleX).rounded(.down)) - r))
            let tx1 = min(w, max(wx1, Int(((cx + s / 2) / scaleX).rounded(.up)) + r))
            let ty0 = max(0, min(wy0, Int(((cy - s / 2) / scaleY).rounded(.down)) - r))
            let ty1 = min(h, max(wy1, Int(((cy + s / 2) / scaleY).rounded(.up)) + r))
            guard tx1 > tx0, ty1 > ty0 else { continue }
            let tw = tx1 - tx0, th = ty1 - ty0
            let hits = ShapeRaster.coverage(shape: shape, size: s, cx: cx, cy: cy, xs: tx0..<tx1, ys: ty0..<ty1,
                                            scaleX: scaleX, scaleY: scaleY, samples: samples)
            let template = hits.map { Double($0) / perPixel }
            var masses = [Double](repeating: 0, count: tw * th)
            for y in ty0..<ty1 {
                for x in tx0..<tx1 where x >= wx0 && x < wx1 && y >= wy0 && y < wy1 {
                    masses[(y - ty0) * tw + (x - tx0)] = mass(x, y)
                }
            }
            // Generated images are softer than renders: each template is also compared after Gaussian blurs, and the
            // best blur counts, so that softness does not favour the rounder shapes.
            for sigma in Self.blurLevels {
                let t = sigma == 0 ? template : Self.gaussianBlurred(template, width: tw, height: th, sigma: sigma)
                var difference = 0.0, sum = 0.0
                for i in 0..<t.count {
                    // The faint values the mask drops as noise are dropped from the template alike.
                    let ti = t[i] < Double(floor) ? 0 : t[i]
                    difference += abs(masses[i] - ti)
                    sum += masses[i] + ti
                }
                let error = sum > 0 ? difference / sum : 1
                if bestFit == nil || error < bestFit!.error { bestFit = (shape, error, s, cx, cy, sigma) }
            }
        }
        let fit = bestFit ?? (.square, 1, ShapeKind.square.size(area: area), centroidX, centroidY, 0)
        return DetectedObject(color: ShapeColor(rawValue: Int(colour))!, shape: fit.shape, cx: fit.cx, cy: fit.cy,
                              centroidX: centroidX, centroidY: centroidY, size: fit.s, area: area,
                              minX: minX, minY: minY, maxX: maxX, maxY: maxY, fitError: fit.error, blur: fit.blur)
    }

    /// The template blurs tried, σ in image pixels (a 3 × 3 box blur has σ ≈ 0.8).
    static let blurLevels: [Double] = [0, 0.5, 0.8, 1.1]
    /// The reach of the blur kernel in pixels.
    static let blurRadius = 3

    /// `values` (a `width` × `height` map) convolved with a normalised Gaussian of standard deviation `sigma`,
    /// separably, with the kernel truncated at `blurRadius` and renormalised at the borders.
    static func gaussianBlurred(_ values: [Double], width: Int, height: Int, sigma: Double) -> [Double] {
        let r = blurRadius
        let kernel = (-r...r).map { k in exp(-Double(k * k) / (2 * sigma * sigma)) }
        var rows = [Double](repeating: 0, count: values.count), out = rows
        for y in 0..<height {
            for x in 0..<width {
                var acc = 0.0, norm = 0.0
                for k in -r...r where x + k >= 0 && x + k < width { acc += kernel[k + r] * values[y * width + x + k]; norm += kernel[k + r] }
                rows[y * width + x] = acc / norm
            }
        }
        for y in 0..<height {
            for x in 0..<width {
                var acc = 0.0, norm = 0.0
                for k in -r...r where y + k >= 0 && y + k < height { acc += kernel[k + r] * rows[(y + k) * width + x]; norm += kernel[k + r] }
                out[y * width + x] = acc / norm
            }
        }
        return out
    }
}
