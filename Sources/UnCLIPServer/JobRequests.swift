import Foundation
import Hummingbird
import UnCLIPImage
import UnCLIPModels

// The job routes' requests, one type per route: read and validated completely from the request's fields and files
// before the model is asked for anything. `Routes` builds them from a request; `RequestReading` from bytes (the
// fuzz target's entry point).

/// `POST /v1/images/generations` (JSON).
struct GenerationRequest: Sendable {
    var prompt: String
    var image: ImageRequest

    init(_ fields: RequestFields, models: Set<String>) throws {
        prompt = try fields.requiredString("prompt", maxLength: ImageRequest.maxPromptLength)
        image = try ImageRequest(fields, models: models)
    }
}

/// `POST /v1/images/variations` (multipart): one square PNG.
struct VariationRequest: Sendable {
    var input: RGBImage
    var image: ImageRequest

    init(_ form: FormData, models: Set<String>, maxSide: Int) throws {
        image = try ImageRequest(RequestFields(form: form.fields), models: models)
        input = try PNGInput.decode(form.files["image"], field: "image", maxSide: maxSide).image
    }
}

/// `POST /v1/images/edits` (multipart): the image, the prompt, and the region to repaint — where `mask`'s alpha,
/// else the image's own, is 0.
struct EditRequest: Sendable {
    var input: RGBImage
    var mask: InpaintingMask
    var prompt: String
    var image: ImageRequest

    init(_ form: FormData, models: Set<String>, maxSide: Int) throws {
        let fields = RequestFields(form: form.fields)
        let decoded = try PNGInput.decode(form.files["image"], field: "image", maxSide: maxSide)
        prompt = try fields.requiredString("prompt", maxLength: ImageRequest.maxPromptLength)
        image = try ImageRequest(fields, models: models)
        if let file = form.files["mask"] {
            let m = try PNGInput.decode(file, field: "mask", maxSide: maxSide)
            guard m.width == decoded.width && m.height == decoded.height else {
                throw APIError.invalid("mask", "Invalid mask - the mask is \(m.width)x\(m.height) but the image is \(decoded.width)x\(decoded.height); they must be the same size.", code: "invalid_mask")
            }
            guard let alpha = m.alpha else {
                throw APIError.invalid("mask", "Invalid mask - format must be in ['RGBA', 'LA'], got RGB: its fully transparent pixels mark the area to repaint.", code: "invalid_mask")
            }
            mask = try InpaintingMask(alpha: alpha, width: m.width, height: m.height)
        } else {
            guard let alpha = decoded.alpha else {
                throw APIError.invalid("image", "Invalid input image - format must be in ['RGBA', 'LA', 'L'], got RGB. Without a mask, the image's transparent pixels mark the area to repaint.", code: "invalid_image_format")
            }
            mask = try InpaintingMask(alpha: alpha, width: decoded.width, height: decoded.height)
        }
        input = decoded.image
    }
}

/// `POST /v1/images/interpolations` (multipart, an extension): `image` → `image2` in `n` frames (2–10, default 5),
/// `latent` `interpolated` (default) or `shared`.
struct InterpolationRequest: Sendable {
    var first: RGBImage
    var second: RGBImage
    var latent: InterpolationLatent
    var image: ImageRequest
    /// Each frame's position between the two images, 0…1.
    var thetas: [Double] { (0..<image.n).map { Double($0) / Double(image.n - 1) } }

    init(_ form: FormData, models: Set<String>, maxSide: Int) throws {
        let fields = RequestFields(form: form.fields)
        image = try ImageRequest(fields, models: models, nRange: 2...10, defaultN: 5)
        first = try PNGInput.decode(form.files["image"], field: "image", maxSide: maxSide).image
        second = try PNGInput.decode(form.files["image2"], field: "image2", maxSide: maxSide).image
        latent = try fields.choice("latent", ["interpolated": InterpolationLatent.interpolated, "shared": .shared]) ?? .interpolated
    }
}

/// `POST /v1/images/text-diffs` (multipart, an extension): the image's embedding turned by `theta` (0–1, default
/// 0.5, the last frame's) toward `to` − `from`; with `n` > 1 the frames are θ·k/(n − 1), k = 0…n − 1.
struct TextDiffRequest: Sendable {
    var input: RGBImage
    var source: String
    var target: String
    var thetas: [Float]
    var image: ImageRequest

    init(_ form: FormData, models: Set<String>, maxSide: Int) throws {
        let fields = RequestFields(form: form.fields)
        image = try ImageRequest(fields, models: models)
        input = try PNGInput.decode(form.files["image"], field: "image", maxSide: maxSide).image
        source = try fields.requiredString("from", maxLength: ImageRequest.maxPromptLength)
        target = try fields.requiredString("to", maxLength: ImageRequest.maxPromptLength)
        let theta = Float(try fields.number("theta", in: 0...1) ?? 0.5)
        let n = image.n
        thetas = n == 1 ? [theta] : (0..<n).map { theta * Float($0) / Float(n - 1) }
    }
}

/// The job routes' request readers on bytes, for the fuzz target `FuzzRequest`: the code `Routes` runs on a
/// request's body (the body limits, JSON or streamed multipart parsing, every field's validation, PNG decoding),
/// without a model.
public enum RequestReading {
    /// A job route.
    public enum Route: String, CaseIterable, Sendable {
        case generations, variations, edits, interpolations, textDiffs = "text-diffs"
    }

    /// Reads `chunks`, in that order, as the body of `route` with `contentType`, under `configuration`'s limits;
    /// throws the error a client would be answered with: an `APIError` (any other error would be a 500).
    public static func read(_ route: Route, chunks: [[UInt8]], contentType: String?,
                            configuration: ServerConfiguration) async throws {
        let stream = AsyncStream<ByteBuffer> { continuation in
            for chunk in chunks { continuation.yield(ByteBuffer(bytes: chunk)) }
            continuation.finish()
        }
        let body = RequestBody(asyncSequence: stream)
        let length = chunks.reduce(0) { $0 + $1.count }
        let models: Set<String> = ["dall-e-2", "shapes-unclip"]
        let c = configuration
        switch route {
        case .generations:
            _ = try GenerationRequest(try await RequestFields.read(body, maxBytes: c.maxJSONBytes), models: models)
        default:
            let form = try await FormData.read(body, contentType: contentType, contentLength: length,
                                               maxBytes: c.maxMultipartBytes, maxFileBytes: PNGInput.maxBytes)
            switch route {
            case .generations: break
            case .variations: _ = try VariationRequest(form, models: models, maxSide: c.maxInputSide)
            case .edits: _ = try EditRequest(form, models: models, maxSide: c.maxInputSide)
            case .interpolations: _ = try InterpolationRequest(form, models: models, maxSide: c.maxInputSide)
            case .textDiffs: _ = try TextDiffRequest(form, models: models, maxSide: c.maxInputSide)
            }
        }
    }
}

extension RequestFields {
    /// A JSON body of at most `maxBytes` (413 beyond), read as it streams in and parsed.
    static func read(_ body: RequestBody, maxBytes: Int) async throws -> RequestFields {
        var bytes: [UInt8] = []
        try await FormData.readChunks(body) { chunk in
            guard bytes.count + chunk.readableBytes <= maxBytes else { throw APIError.tooLarge(limit: maxBytes) }
            bytes += chunk.readableBytesView
        }
        return try parseJSON(bytes)
    }
}
