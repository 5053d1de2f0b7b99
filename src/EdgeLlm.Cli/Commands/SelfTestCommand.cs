using System.CommandLine;
using EdgeLlm.Runtime;

namespace EdgeLlm.Cli.Commands;

/// <summary>
/// <c>edgellm selftest</c>: runs every SIMD kernel this CPU supports against its scalar
/// reference (<see cref="SelfTest.Run"/>) and prints one line per check. Exit 0 when all
/// pass, 2 when any fails. Made for targets without <c>dotnet test</c> (arm64 under qemu).
/// </summary>
public static class SelfTestCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var cmd = new Command("selftest", "Check every SIMD kernel available on this CPU against its scalar reference");
        cmd.SetAction(pr => ExitCodes.Guard(pr.GetValue(verbose), () => SelfTest.Run(Console.Out) == 0 ? ExitCodes.Ok : 2));
        return cmd;
    }
}
