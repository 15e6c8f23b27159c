/// The instance driver of a run whose every site is driven at the site level (Patroni): failoverd owns no
/// server there, so nothing of PostgreSQL is needed on its host. Every site-level site is reached through
/// its own ``SiteDriver`` (``DriverRegistry``), so nothing calls this one; a call would be a bug, and it
/// fails closed, naming the instance, rather than take a server for stopped because no postmaster runs here.
struct NoInstanceDriver: InstanceDriver {
    func refusal(_ instance: Instance, _ what: String) -> FailoverError {
        FailoverError.failed(
            "cannot \(what) \(instance.name) through an instance driver: every site of this plan is driven at the site level, through its own driver."
        )
    }

    func status(of instance: Instance) async throws -> InstanceStatus { throw refusal(instance, "probe") }
    func controlData(of instance: Instance) async throws -> ControlData? { throw refusal(instance, "read pg_control of") }
    func recoverySettings(of instance: Instance) async throws -> RecoverySettings? {
        throw refusal(instance, "read the standby settings of")
    }
    func configureRecovery(of instance: Instance, _ settings: RecoverySettings) async throws { throw refusal(instance, "configure") }
    func start(_ instance: Instance) async throws { throw refusal(instance, "start") }
    func stop(_ instance: Instance, mode: StopMode) async throws { throw refusal(instance, "stop") }
    func promote(_ instance: Instance) async throws { throw refusal(instance, "promote") }
    func checkpoint(_ instance: Instance) async throws { throw refusal(instance, "checkpoint") }
    func switchWAL(_ instance: Instance) async throws -> String { throw refusal(instance, "switch WAL on") }
    func isArchived(_ instance: Instance, segment: String) async throws -> Bool { throw refusal(instance, "check the archive of") }
    func restore(_ instance: Instance, delta: Bool) async throws { throw refusal(instance, "restore") }
    func rewind(_ instance: Instance, source: Instance) async throws -> String { throw refusal(instance, "rewind") }
    func writeProbe(_ instance: Instance) async throws -> LSN { throw refusal(instance, "write to") }
    func hasData(_ instance: Instance) async throws -> Bool { throw refusal(instance, "look at the data directory of") }
    func setFenceMarker(_ instance: Instance, reason: String) async throws { throw refusal(instance, "mark fenced") }
    func endOfWAL(_ instance: Instance) async throws -> LSN? { throw refusal(instance, "read the WAL of") }
    func dataFiles(of instance: Instance, in directory: String) async throws -> [DataFile]? {
        throw refusal(instance, "list the data directory of")
    }
    func copyFiles(of instance: Instance, _ paths: [String], into localDirectory: String) async throws -> [CopiedFile] {
        throw refusal(instance, "copy files of")
    }
    func fetchArchivedWAL(_ name: String, using reader: Instance, into localDirectory: String) async throws -> CopiedFile? {
        throw refusal(reader, "fetch archived WAL for")
    }
    func catalogNames(on instance: Instance, _ query: CatalogQuery) async throws -> CatalogAnswer {
        throw refusal(instance, "read the catalog of")
    }
    func inspectIsolatedCopy(of instance: Instance, _ request: IsolatedCopyRequest) async throws -> IsolatedCopyAnswer {
        throw refusal(instance, "copy")
    }
    func lostSlots(on instance: Instance, _ action: LostSlotAction) async throws -> LostSlotState {
        throw refusal(instance, "keep the logical slots of")
    }
    func repositorySystemIdentifier() async throws -> String? {
        throw FailoverError.failed(
            "cannot read the repository through an instance driver: every site of this plan is driven at the site level, through its own driver."
        )
    }
}
