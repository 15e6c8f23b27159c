import Foundation
import Testing

@testable import FailoverEngine

/// The SSH driver's pieces that need no host: the remote command line, the ssh options, the plan rules.
struct SSHDriverUnitTests {
    static let hostile = [
        "'", "\"", "'\\''", "$(id)", "`id`", "a;b", "a|b", "a&&b", "$HOME", "${PATH}", "\\", "a\nb", "\t", "*", "?", "~", "!", "-n", "--",
        " ", "", "é 雪 🐘", "{a,b}", "#x", ">f", "<f", "%s", "\r",
    ]

    /// The command line sshd hands to the login shell, read by /bin/sh here, gives back exactly the argv.
    @Test func theRemoteCommandLineIsReadBackAsTheSameArgv() async throws {
        let shell = RemoteShell(
            host: "198.18.1.10", ssh: SSHSettings(user: "failoverd"), osUser: "failoverd", controlDirectory: "/nonexistent")
        let line = shell.remoteCommandLine(["printf", "%s\\0"] + Self.hostile, workingDirectory: "/tmp")
        #expect(!line.hasPrefix("'sudo'"), "no sudo when the login user is the OS user")
        let r = try await CommandRunner().run("/bin/sh", ["-c", line]).checked()
        #expect(r.stdout.split(separator: "\0", omittingEmptySubsequences: false).dropLast().map(String.init) == Self.hostile)
        let pwd = try await CommandRunner().run("/bin/sh", ["-c", shell.remoteCommandLine(["pwd"], workingDirectory: "/tmp")]).checked()
        #expect(pwd.stdout == "/tmp\n")
    }

    @Test func anotherLoginUserGoesThroughSudoToTheOSUser() {
        let shell = RemoteShell(host: "198.18.1.10", ssh: SSHSettings(user: "dba"), osUser: "failoverd", controlDirectory: "/nonexistent")
        #expect(shell.remoteCommandLine(["true"]).hasPrefix("'sudo' '-n' '-u' 'failoverd' '--' 'env' '-i'"))
    }

    /// A command that needs root goes through `sudo -n --` exactly as argv, so that a sudoers rule can name
    /// `/usr/bin/systemctl start UNIT` and nothing more; a root login needs no sudo.
    @Test func privilegedCommandsAreSudoAndTheArgvAlone() async throws {
        let shell = RemoteShell(host: "198.18.1.10", ssh: SSHSettings(user: "dba"), osUser: "failoverd", controlDirectory: "/nonexistent")
        let argv = [SystemdUnit.systemctl, "start", "postgresql-15.service"]
        #expect(shell.privilegedCommandLine(argv) == "'sudo' '-n' '--' '/usr/bin/systemctl' 'start' 'postgresql-15.service'")
        var root = shell
        root.ssh.user = "root"
        #expect(root.privilegedCommandLine(argv) == "'/usr/bin/systemctl' 'start' 'postgresql-15.service'")
        let echoed = try await CommandRunner().run("/bin/sh", ["-c", root.privilegedCommandLine(["printf", "%s\\0"] + Self.hostile)])
            .checked()
        #expect(echoed.stdout.split(separator: "\0", omittingEmptySubsequences: false).dropLast().map(String.init) == Self.hostile)
    }

    /// The fence drop-in of a systemd instance: one ExecStartPre that refuses while the marker exists and the
    /// data directory has no standby.signal; its words escaped for systemd's own parser ($ and % doubled).
    @Test func theFenceDropInChecksTheMarkerAndStandbySignal() throws {
        #expect(SystemdUnit.word(#"a$b%c"d\e f"#) == #""a$$b%%c\"d\\e f""#)
        var instance = Instance(name: "dr-0", host: "198.18.2.10", port: 5432, dataDirectory: "/var/lib/postgresql/15/dr")
        #expect(SystemdUnit(instance) == nil, "no service: pg_ctl")
        instance.service = ServiceSettings(manager: "systemd", unit: "postgresql-15.service")
        let unit = try #require(SystemdUnit(instance))
        #expect(!unit.userScope && unit.effectiveDropInDirectory == "/etc/systemd/system/postgresql-15.service.d")
        let text = unit.dropIn(for: instance)
        let paths = ServerPaths(instance)
        let line = try #require(text.split(separator: "\n").first { $0.hasPrefix("ExecStartPre=") })
        #expect(text.contains("\n[Service]\n"))
        #expect(line.hasPrefix("ExecStartPre=/bin/sh -c \""))
        #expect(line.hasSuffix(" failoverd-fence \"\(paths.fenceMarker)\" \"\(paths.dataDirectory)\" \"dr-0\""))
        #expect(line.contains(#"[ -e \"$$1\" ] && [ ! -e \"$$2/standby.signal\" ]"#) && line.contains("exit 1"))
        instance.service = ServiceSettings(
            manager: "systemd", unit: "pg.service", scope: "user", runtimeDirectory: "/run/user/104",
            dropInDirectory: "/home/pg/.config/systemd/user/pg.service.d")
        let user = try #require(SystemdUnit(instance))
        #expect(user.userScope && user.effectiveDropInDirectory == "/home/pg/.config/systemd/user/pg.service.d")
        #expect(user.prologueArguments == ["/run/user/104", "user"])
    }

    /// Key authentication only, strict host keys, no config file, no forwarding, one master per host.
    @Test func theSSHOptionsAreStrict() throws {
        let ssh = SSHSettings(user: "dba", port: 2222, identityFile: "/etc/failoverd/id", knownHostsFile: "/etc/failoverd/known_hosts")
        let shell = RemoteShell(host: "198.18.1.10", ssh: ssh, osUser: "failoverd", controlDirectory: "/tmp/cm")
        let options = shell.sshOptions
        func has(_ option: String) -> Bool { zip(options, options.dropFirst()).contains { $0 == "-o" && $1 == option } }
        for option in [
            "BatchMode=yes", "StrictHostKeyChecking=yes", "PasswordAuthentication=no", "KbdInteractiveAuthentication=no",
            "PreferredAuthentications=publickey", "ForwardAgent=no", "ClearAllForwardings=yes", "ControlMaster=auto",
            "ControlPath=" + shell.controlPath, "IdentitiesOnly=yes", "UserKnownHostsFile=/etc/failoverd/known_hosts",
            "GlobalKnownHostsFile=/dev/null",
        ] {
            #expect(has(option), "missing -o \(option)")
        }
        #expect(options.starts(with: ["-F", "none"]))
        // One socket per host, port and login, named short enough for a unix socket path (ssh adds 17 bytes).
        #expect(shell.controlPath.wholeMatch(of: try Regex("/tmp/cm/[0-9a-f]{16}")) != nil, "\(shell.controlPath)")
        #expect(zip(options, options.dropFirst()).contains { $0 == "-p" && $1 == "2222" })
        #expect(zip(options, options.dropFirst()).contains { $0 == "-i" && $1 == "/etc/failoverd/id" })
    }

    /// Without a plan's known_hosts or key, the user's own apply: no option points elsewhere.
    @Test func withoutFilesTheUsersOwnApply() {
        let options = RemoteShell(host: "198.18.1.10", ssh: SSHSettings(user: "dba"), osUser: "failoverd", controlDirectory: "/tmp/cm")
            .sshOptions
        #expect(!options.contains { $0.hasPrefix("UserKnownHostsFile=") || $0 == "-i" || $0.hasPrefix("IdentitiesOnly") })
        #expect(options.contains("StrictHostKeyChecking=yes"))
    }

    @Test func aPlanOfSSHSitesUsesTheSSHDriverAndRefusesAMix() throws {
        let plan = try PlanLoader.load(CLI.plan("dc-switchover"))
        #expect(DriverRegistry.runDriver(plan: plan, simulate: false) == .ssh)
        #expect(DriverRegistry.runDriver(plan: plan, simulate: true) == .simulated)
        #expect(plan.sites.allSatisfy { $0.ssh?.user == "fodlab" && $0.ssh?.knownHostsFile != nil })
        var mixed = plan
        mixed.sites[0].driver = .local
        mixed.sites[0].ssh = nil
        expectFailure(.invalidInput, "one run drives its sites through one driver") {
            _ = try StandardDrivers(stateDirectory: "/tmp/failoverd-unit-none", simulate: false, logger: .init(label: "t"))
                .make(plan: mixed, kind: .ssh)
        }
        let partitioned = try PlanLoader.load(CLI.plan("dc-failover-partitioned"))
        #expect(partitioned.fencing?.command == ["/tmp/failoverd-lab-dcp/fence-site"])
    }
}

/// The plan rules of ssh sites, service managers and the fencing hook, each at its path.
struct RemotePlanValidatorTests {
    static let sshSite = #""driver": "ssh", "ssh": { "user": "dba", "knownHostsFile": "/etc/failoverd/known_hosts" }, "role": "primary","#

    private func problems(_ edits: [(String, String)]) throws -> [PlanProblem] {
        PlanValidator.validate(Data(try PlanFixtures.edited(PlanFixtures.documentedExample(), edits).utf8)).problems
    }

    private func expectError(_ edits: [(String, String)], at path: String, _ message: String) throws {
        let found = try problems(edits)
        #expect(
            found.contains { $0.severity == .error && $0.path.description == path && $0.message.contains(message) },
            "expected \(path): \(message)\ngot:\n\(found.map(\.description).joined(separator: "\n"))")
    }

    @Test func anSSHSiteWithItsSettingsIsValid() throws {
        let text = try PlanFixtures.edited(
            PlanFixtures.documentedExample(),
            [
                (#""driver": "local", "role": "primary","#, Self.sshSite),
                (
                    #""driver": "local", "role": "archive-standby","#,
                    #""driver": "ssh", "ssh": { "user": "dba" }, "role": "archive-standby","#
                ),
            ])
        let validation = PlanValidator.validate(Data(text.utf8))
        #expect(validation.errors == [], "\(validation.errors)")
        #expect(validation.plan?.sites[0].ssh == SSHSettings(user: "dba", knownHostsFile: "/etc/failoverd/known_hosts"))
    }

    @Test func anSSHSiteNeedsItsSettings() throws {
        try expectError(
            [(#""driver": "local", "role": "primary","#, #""driver": "ssh", "role": "primary","#)], at: "$.sites[0].ssh",
            "driver ssh needs its \"ssh\" settings")
    }

    @Test func aServiceManagerTakesExactlyItsFields() throws {
        let site = (#""driver": "local", "role": "primary","#, Self.sshSite)
        try expectError(
            [site, (#""port": 6432,"#, #""port": 6432, "service": { "manager": "pg_ctlcluster", "cluster": "main" },"#)],
            at: "$.sites[0].instances[0].service.version", "service manager pg_ctlcluster needs \"version\"")
        try expectError(
            [site, (#""port": 6432,"#, #""port": 6432, "service": { "manager": "pg_ctl", "unit": "postgresql@15-main.service" },"#)],
            at: "$.sites[0].instances[0].service.unit", "\"unit\" does not apply to service manager pg_ctl")
        try expectError(
            [site, (#""port": 6432,"#, #""port": 6432, "service": { "manager": "systemd" },"#)],
            at: "$.sites[0].instances[0].service.unit", "service manager systemd needs \"unit\"")
        try expectError(
            [
                site,
                (
                    #""port": 6432,"#,
                    #""port": 6432, "service": { "manager": "systemd", "unit": "pg.service", "runtimeDirectory": "/run/user/104" },"#
                ),
            ],
            at: "$.sites[0].instances[0].service.runtimeDirectory", "applies to systemd scope user only")
        try expectError(
            [
                site,
                (
                    #""port": 6432,"#,
                    #""port": 6432, "service": { "manager": "systemd", "unit": "pg.service", "dropInDirectory": "/etc/systemd/system" },"#
                ),
            ],
            at: "$.sites[0].instances[0].service.dropInDirectory", "is not a UNIT.service.d directory")
        try expectError(
            [site, (#""port": 6432,"#, #""port": 6432, "service": { "manager": "systemd", "unit": "pg.service", "scope": "session" },"#)],
            at: "$.sites[0].instances[0].service.scope", "systemd scope")
        try expectError(
            [
                site,
                (
                    #""port": 6432,"#,
                    #""port": 6432, "service": { "manager": "pg_ctlcluster", "version": 15, "cluster": "main", "scope": "user" },"#
                ),
            ],
            at: "$.sites[0].instances[0].service.scope", "\"scope\" does not apply to service manager pg_ctlcluster")
        let systemd = try problems([
            site,
            (
                #""port": 6432,"#,
                #""port": 6432, "service": { "manager": "systemd", "unit": "pg-a.service", "scope": "user", "runtimeDirectory": "/run/user/104", "dropInDirectory": "/var/lib/postgresql/.config/systemd/user/pg-a.service.d" },"#
            ),
        ])
        #expect(systemd.filter { $0.severity == .error } == [], "\(systemd)")
        try expectError(
            [(#""port": 6432,"#, #""port": 6432, "service": { "manager": "pg_ctlcluster", "version": 15, "cluster": "main" },"#)],
            at: "$.sites[0].instances[0].service.manager", "applies to driver ssh only")
    }

    @Test func theFencingHookIsAnAbsoluteArgv() throws {
        let version = (#""version": 1,"#, #""version": 1, "fencing": { "command": ["fence-dc", "--now"] },"#)
        try expectError([version], at: "$.fencing.command[0]", "is not absolute")
        let empty = (#""version": 1,"#, #""version": 1, "fencing": { "command": [] },"#)
        try expectError([empty], at: "$.fencing.command", "fencing has no command")
        let good = (#""version": 1,"#, #""version": 1, "fencing": { "command": ["/usr/local/sbin/fence-dc", "--dc", "eu 1"] },"#)
        #expect(try problems([good]).filter { $0.severity == .error } == [])
    }
}
