@testable import CairnCoordinator
import CairnStore
import Testing

/// Which runs a cleanup takes, decided with no store and a clock passed in.
@Suite struct RetentionTests {
    static let day = 86_400.0
    static let now = 100 * day

    static func run(_ id: String, _ graph: String = "g", _ status: RunStatus = .completed, daysAgo: Double,
                    pinned: Bool = false, parent: String? = nil) -> RetentionPolicy.Run {
        RetentionPolicy.Run(runID: id, graph: graph, status: status, createdAt: now - daysAgo * day - 60, finishedAt: now - daysAgo * day,
                            pinned: pinned, parent: parent)
    }

    @Test func takesFinishedRunsPastTheAgeAndNeverActiveOnes() {
        let runs = [Self.run("old", daysAgo: 40), Self.run("young", daysAgo: 3), Self.run("failed", "g", .failed, daysAgo: 50),
                    Self.run("paused", "g", .paused, daysAgo: 90), Self.run("running", "g", .running, daysAgo: 90),
                    Self.run("held", daysAgo: 60)]
        let d = RetentionPolicy(olderThan: 30 * Self.day).decide(runs, active: ["held"], now: Self.now)
        #expect(d.delete.map(\.runID) == ["failed", "old"])  // oldest first
        #expect(d.kept.map(\.run.runID) == ["held"] && d.kept.first?.reason == "the coordinator is working on it")
    }

    @Test func filtersByStatusAndGraph() {
        let runs = [Self.run("a", "ingest", .failed, daysAgo: 10), Self.run("b", "ingest", .completed, daysAgo: 10),
                    Self.run("c", "render", .failed, daysAgo: 10), Self.run("d", "ingest", .cancelled, daysAgo: 10)]
        let d = RetentionPolicy(olderThan: Self.day, statuses: [.failed, .cancelled], graph: "ingest").decide(runs, active: [], now: Self.now)
        #expect(d.delete.map(\.runID).sorted() == ["a", "d"])
    }

    @Test func pinnedRunsAndTheNewestOfEachGraphStay() {
        let runs = (1...5).map { Self.run("g\($0)", "g", daysAgo: Double(10 * $0)) } + [Self.run("h1", "h", daysAgo: 40), Self.run("h2", "h", daysAgo: 50, pinned: true)]
        let d = RetentionPolicy(olderThan: 0, keepLatest: 2).decide(runs, active: [], now: Self.now)
        #expect(d.delete.map(\.runID) == ["g5", "g4", "g3"])
        let kept = Dictionary(uniqueKeysWithValues: d.kept.map { ($0.run.runID, $0.reason) })
        #expect(kept["g1"] == "among the 2 newest of graph g" && kept["g2"] == "among the 2 newest of graph g")
        #expect(kept["h1"] == "among the 2 newest of graph h" && kept["h2"] == "pinned")
    }

    @Test func aRunAForkStillReadsFromStaysAndSoDoItsOwnParents() {
        // root <- mid <- leaf (forks read their parents' values in place); leaf is too young to go.
        let runs = [Self.run("root", daysAgo: 90), Self.run("mid", daysAgo: 80, parent: "root"), Self.run("leaf", daysAgo: 1, parent: "mid"),
                    Self.run("lone", daysAgo: 90), Self.run("p", daysAgo: 90), Self.run("fork-of-p", daysAgo: 85, parent: "p")]
        let d = RetentionPolicy(olderThan: 30 * Self.day).decide(runs, active: [], now: Self.now)
        // A parent and its fork that both go, go together.
        #expect(d.delete.map(\.runID) == ["lone", "p", "fork-of-p"])
        let kept = Dictionary(uniqueKeysWithValues: d.kept.map { ($0.run.runID, $0.reason) })
        #expect(kept == ["mid": "run leaf was forked from it", "root": "run mid was forked from it"])
    }
}
