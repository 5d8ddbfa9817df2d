// `laminafs passthrough [-f] [-d] [-o OPT,...] SOURCE MOUNTPOINT`

#ifndef LAMINA_CMD_PASSTHROUGH_COMMAND_H_
#define LAMINA_CMD_PASSTHROUGH_COMMAND_H_

#include <string>
#include <vector>

namespace lamina::cmd {

// `args` are the arguments after "passthrough". Returns the exit code.
int RunPassthrough(const std::vector<std::string>& args);

}  // namespace lamina::cmd

#endif  // LAMINA_CMD_PASSTHROUGH_COMMAND_H_
