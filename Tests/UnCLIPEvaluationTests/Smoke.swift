import XCTest
@testable import UnCLIPEvaluation

final class UnCLIPEvaluationSmokeTests: XCTestCase {
    func testBuilds() {}
}
