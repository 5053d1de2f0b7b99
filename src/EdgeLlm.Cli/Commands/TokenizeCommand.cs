using System.CommandLine;
using EdgeLlm.Gguf;
using EdgeLlm.Tokenizers;

namespace EdgeLlm.Cli.Commands;

/// <summary><c>edgellm tokenize</c>: a JSON array of token ids on stdout.</summary>
public static class TokenizeCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var model = ModelResolver.CreateOption();
        var prompt = new Option<string?>("--prompt", "-p") { Description = "Text to tokenize" };
        var file = new Option<string?>("--file", "-f") { Description = "Read the text from a file (UTF-8)" };
        var noBos = new Option<bool>("--no-bos") { Description = "Add no BOS/EOS tokens" };
        var special = new Option<bool>("--special") { Description = "Parse special-token text (e.g. <|eot_id|>) into special tokens" };
        var cmd = new Command("tokenize", "Print the token ids of a text as a JSON array") { model, prompt, file, noBos, special };
        cmd.SetAction(pr => ExitCodes.Guard(pr.GetValue(verbose), () =>
        {
            if (pr.GetValue(prompt) is null && pr.GetValue(file) is null) throw new UsageException("give the text with -p TEXT or -f FILE");
            string text = RunCommand.ReadPrompt(pr.GetValue(prompt), pr.GetValue(file));
            // Only the vocabulary is needed: a vocab-only GGUF of any architecture works.
            using var gguf = GgufFile.Open(ModelResolver.Resolve(pr.GetValue(model)));
            var tokenizer = Tokenizer.FromGguf(gguf);
            var ids = tokenizer.Encode(text, addSpecial: !pr.GetValue(noBos), parseSpecial: pr.GetValue(special));
            Console.Out.Write("[" + string.Join(", ", ids) + "]\n");
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
