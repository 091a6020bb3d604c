<#
.SYNOPSIS
    Устанавливает агент sitewatch на компьютер точки из офлайн-комплекта и ставит его на автозапуск
    через планировщик заданий Windows. С ключом -Uninstall удаляет агент.

.DESCRIPTION
    Скрипт лежит в корне распакованного комплекта, рядом с папками wheels и examples, и ставит агент
    оттуда, без интернета. По порядку он:
      1. проверяет права администратора; если их нет, перезапускает себя с запросом прав;
      2. следит, чтобы установка или удаление шли только в одном окне: второй запуск сразу
         заканчивается и говорит, что установка уже идёт;
      3. снимает с файлов комплекта отметку «скачано из интернета»;
      4. находит Python, для которого в комплекте есть пакеты (сначала через py.exe, затем в обычных папках);
      5. выбирает настройки: готовый файл из -Config, site.yml рядом с install.cmd или те, что уже лежат
         в C:\ProgramData\sitewatch\site.yml; если настроек ещё нет, кладёт туда пример и открывает его
         в Блокноте; закрывает эту папку для всех, кроме системной учётной записи (СИСТЕМА) и
         администраторов, потому что в настройках бывают пароли;
      6. останавливает работающий агент, создаёт окружение Python в C:\Program Files\sitewatch\venv
         и ставит в него sitewatch из папки wheels; при повторном запуске обновляет его;
      7. кладёт новые настройки на место (прежние сохраняются рядом как site.yml.bak), проверяет их
         (sitewatch-exporter validate) и один раз прогоняет все проверки (sitewatch-exporter check);
         в режимах Pusher и Both ещё и один раз отправляет результаты в офис. Если новые настройки не
         прошли проверку, установку остановили или окно закрыли, возвращаются прежние настройки
         и снова запускается прежний агент;
      8. регистрирует задачи \sitewatch\sitewatch-pusher и (или) \sitewatch\sitewatch-exporter:
         запуск при включении компьютера от имени системной учётной записи (СИСТЕМА), перезапуск после
         сбоя (планировщик проверяет задачу раз в минуту), без ограничения времени работы и при работе
         от батареи; журнал пишется в C:\ProgramData\sitewatch\logs; запускает задачи, до минуты ждёт
         первой отправки данных в офис и сообщает, дошли ли они и работает ли агент.

    Повторный запуск безопасен: он обновляет программу из нового комплекта, заново проверяет настройки
    и перезапускает агент в прежнем режиме, с прежним адресом страницы (-ListenAddress) и прежним
    файлом -WebConfigFile, если их не указать заново. Так же применяются изменения в site.yml.

    Сообщения программ на английском (ответы pip, строки об отправке данных) записываются в журнал
    установки C:\ProgramData\sitewatch\logs\install.log: это подробности для администратора.

    Обычно скрипт запускают через install.cmd (двойным щелчком или из командной строки). install.cmd
    сначала снимает с файлов комплекта отметку «скачано из интернета», затем разрешает выполнение
    сценария только для этого запуска. Если запускать сам install.ps1 и PowerShell отвечает, что
    выполнение сценариев отключено, сначала введите в том же окне PowerShell:
        Set-ExecutionPolicy -Scope Process Bypass
    Это разрешает сценарии только в этом окне и только до его закрытия. Если и это не помогает,
    выполнение сценариев запрещено групповой политикой: что делать, сказано в разделе «Примечания».

.NOTES
    Windows не даёт запустить сценарий установки: выполнение сценариев PowerShell на этом компьютере
    запрещено групповой политикой (политика выполнения AllSigned или Restricted), и ни install.cmd, ни
    uninstall.cmd не могут разрешить его даже на один запуск. Что сделать:
      1. Попросите администратора домена разрешить на этом компьютере локальные сценарии: параметр
         групповой политики «Включить выполнение сценариев» (Конфигурация компьютера — Административные
         шаблоны — Компоненты Windows — Windows PowerShell) со значением «Разрешить локальные сценарии
         и удалённые подписанные сценарии». Можно и на время установки вывести компьютер из-под этой
         политики.
      2. Когда политику изменят, выполните в командной строке gpupdate /force и запустите install.cmd
         (или uninstall.cmd) ещё раз.
    Какая политика действует, показывает команда PowerShell Get-ExecutionPolicy -List: строки
    MachinePolicy и UserPolicy задаёт групповая политика.

.PARAMETER Mode
    Как агент работает на этой точке:
      Pusher   — офис не может сам подключиться к этому компьютеру: агент (sitewatch-pusher) прогоняет
                 проверки и сам отправляет результаты в офис;
      Exporter — офисный Prometheus сам опрашивает этот компьютер: агент (sitewatch-exporter) отдаёт
                 результаты на порту 9815;
      Both     — оба сразу: проверки прогоняет sitewatch-exporter, а sitewatch-pusher забирает его
                 результаты со страницы http://127.0.0.1:9815/metrics и отправляет в офис, так что каждая
                 проверка выполняется один раз. Страница должна отвечать на 127.0.0.1 без пароля, поэтому
                 -WebConfigFile в этом режиме не применяется, а в настройках должна быть одна точка.
    Если режим не указан, скрипт спросит его: при первой установке просто Enter выбирает Pusher, при
    повторной — режим, в котором агент уже работает. Без окна (например, из планировщика) повторная
    установка без -Mode оставляет прежний режим.

.PARAMETER Config
    Готовый файл настроек точки (site.yml). Он копируется в папку настроек (прежний сохраняется рядом
    как site.yml.bak) вместе с файлами, которые он называет относительным путём: файлом пароля
    ({file: ...}), ca_file, key_file и другими *_file, в том числе записанными в фигурных скобках
    (tls: {ca_file: ca.pem}). Новые настройки проверяются уже на месте; если проверка не прошла,
    возвращаются прежние. Если -Config не указан, берётся site.yml, лежащий рядом с install.cmd: при
    первой установке сразу, при повторной — если он отличается от настроек на компьютере и вы
    согласитесь их заменить (без окна для вопроса остаются настройки, которые уже есть). Если нет и
    его, при первой установке скрипт кладёт в папку настроек пример и открывает его в Блокноте.

.PARAMETER InstallDir
    Куда установить программу. По умолчанию C:\Program Files\sitewatch. uninstall.cmd, скопированный
    в папку программы, удаляет ту папку, из которой он запущен.

.PARAMETER ConfigDir
    Папка настроек и журналов; в ней задачи и работают. По умолчанию C:\ProgramData\sitewatch. При
    удалении без этого ключа берётся папка, в которой работали задачи.

.PARAMETER ListenAddress
    Адрес и порт страницы экспортёра (режимы Exporter и Both). По умолчанию :9815, то есть все
    адреса компьютера; 127.0.0.1:9815 — только сам компьютер. При повторной установке без этого ключа
    остаётся адрес прежней задачи sitewatch-exporter. В режиме Both адрес должен включать 127.0.0.1:
    подходят :9815 и 127.0.0.1:9815.

.PARAMETER WebConfigFile
    Файл с настройками TLS и паролей для страницы экспортёра (передаётся как --web.config.file). Он
    копируется в папку настроек (C:\ProgramData\sitewatch\web) вместе с файлами сертификатов и ключей,
    которые он называет относительным путём, и задача берёт его оттуда. При повторной установке без
    этого ключа остаётся файл прежней задачи; -WebConfigFile none убирает его. В режиме Both не
    применяется: sitewatch-pusher читает страницу без пароля.

.PARAMETER OpenFirewall
    Открыть порт экспортёра в брандмауэре Windows для адресов из -AllowFrom. Без -AllowFrom скрипт
    спросит адрес офисного Prometheus.

.PARAMETER AllowFrom
    С каких адресов пускать к порту экспортёра: адрес офисного Prometheus, подсеть (10.8.0.0/24),
    диапазон (10.8.0.1-10.8.0.9) или слово LocalSubnet; несколько — через запятую. Если указан
    -AllowFrom, ключ -OpenFirewall можно не писать. Если не указан ни один из них и правила для порта
    ещё нет, скрипт спросит адрес офисного Prometheus; просто Enter оставляет порт закрытым.

.PARAMETER AllowIcmpReplies
    Разрешить в брандмауэре входящие ответы на ping (ICMPv4, тип 0). Нужно, если проверки ping
    дают timeout, хотя ping.exe ответы получает.

.PARAMETER Python
    Путь к python.exe, которым создать окружение, если скрипт сам не нашёл подходящий Python. Если
    этот Python не подходит, скрипт скажет почему.

.PARAMETER Force
    Зарегистрировать задачи, даже если пробный прогон нашёл неполадки (например, касса сейчас
    выключена) или отправить результаты в офис не удалось. Ошибку в самих настройках -Force не обходит.

.PARAMETER Uninstall
    Удалить агент: остановить и удалить задачи, правила брандмауэра и папку программы. Папка настроек
    остаётся, если не указан -Purge.

.PARAMETER Purge
    Вместе с -Uninstall удалить и папку настроек с журналами.

.PARAMETER PauseAtEnd
    Дождаться нажатия Enter перед выходом, чтобы окно не закрылось само. Скрипт добавляет этот ключ
    сам, когда перезапускается с правами администратора в новом окне.

.EXAMPLE
    install.cmd
    Двойной щелчок: скрипт спросит режим, откроет пример настроек в Блокноте, проверит их и запустит агент.

.EXAMPLE
    install.cmd -Mode Pusher -Config D:\shop-12\site.yml
    Точка, к которой офис подключиться не может: агент сам отправляет результаты, настройки готовы заранее.

.EXAMPLE
    install.cmd -Mode Exporter -AllowFrom 10.8.0.1
    Офисный Prometheus (10.8.0.1) опрашивает этот компьютер; порт 9815 открыт только для него.

.EXAMPLE
    powershell.exe -NoProfile -ExecutionPolicy Bypass -File install.ps1 -Mode Both -Force
    Оба режима; задачи регистрируются, даже если часть проверок сейчас не проходит.

.EXAMPLE
    uninstall.cmd -Purge
    Удалить агент вместе с настройками и журналами.
#>
[CmdletBinding()]
param(
    [ValidateSet('Pusher', 'Exporter', 'Both')]
    [string]$Mode,
    [string]$Config,
    [string]$InstallDir,
    [string]$ConfigDir,
    [string]$ListenAddress,
    [string]$WebConfigFile,
    [switch]$OpenFirewall,
    [string[]]$AllowFrom = @(),
    [switch]$AllowIcmpReplies,
    [string]$Python,
    [switch]$Force,
    [switch]$Uninstall,
    [switch]$Purge,
    [switch]$PauseAtEnd
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

# --- Names and settings -----------------------------------------------------------------------------

$TaskFolder = '\sitewatch\'
$ExporterTask = 'sitewatch-exporter'
$PusherTask = 'sitewatch-pusher'
$FirewallGroup = 'sitewatch'
$ExporterRuleName = 'sitewatch-exporter-tcp'
$IcmpRuleName = 'sitewatch-ping-replies'
# Rules that examples\windows\install-service.ps1 made, by display name: replaced or removed like ours.
$LegacyRuleDisplayNames = @('sitewatch exporter (TCP)', 'sitewatch ping replies (ICMPv4)')
# Well-known SIDs, not names: on a Russian Windows the accounts are called СИСТЕМА and Администраторы.
$SystemSid = 'S-1-5-18'
$AdministratorsSid = 'S-1-5-32-544'
# pyproject.toml's requires-python; the wheels folder decides the newest version and the bitness.
$MinimumPythonMinor = 10
# The versions to advise when no Python fits: python.org publishes Windows installers for a version only
# while it gets bug fixes, not for its later security-only releases (so 3.12 has none for its newest), so
# such a version is never named alone.
$AdvisedPythonMinors = @(12, 13)
$DefaultListenAddress = ':9815'
# One install or uninstall at a time on this computer, whoever runs it: two would replace the same venv
# and the same tasks under each other.
$InstallMutexName = 'Global\sitewatch-install'
# A file a config names by a relative path: "file:" or "<anything>_file:", in block or flow style
# (ca_file: ca.pem, tls: {ca_file: ca.pem}, password: {file: shop-101.password}), the value up to a comma,
# a closing brace, a space or a comment, or a whole quoted value. Comments are cut off first with
# $YamlCommentPattern. tests/test_windows_install_script.py runs both patterns against the example config.
$RelativeFilePattern = '\b(?:\w+_)?file\s*:\s*(''[^'']*''|"[^"]*"|[^,}\s#]+)'
$YamlCommentPattern = '(?:^|\s)#.*$'

# uninstall.cmd copied into the install folder runs this copy of the script from there: that folder is the
# one to remove, wherever it was installed (an install folder has the venv and no wheels).
$RunFromInstallDir = (Test-Path -LiteralPath (Join-Path $PSScriptRoot 'venv') -PathType Container) -and
    -not (Test-Path -LiteralPath (Join-Path $PSScriptRoot 'wheels') -PathType Container)
if (-not $InstallDir) {
    if ($RunFromInstallDir) {
        $InstallDir = $PSScriptRoot
    } else {
        # A 32-bit PowerShell on a 64-bit Windows sees "Program Files (x86)" as ProgramFiles.
        $programFiles = $env:ProgramW6432
        if (-not $programFiles) { $programFiles = $env:ProgramFiles }
        $InstallDir = Join-Path $programFiles 'sitewatch'
    }
}
if (-not $ConfigDir) { $ConfigDir = Join-Path $env:ProgramData 'sitewatch' }

$script:Bound = @{}
foreach ($parameterName in $PSBoundParameters.Keys) { $script:Bound[$parameterName] = $PSBoundParameters[$parameterName] }
$script:ExitCode = 0
$script:StopMessage = $null
$script:SuspendedTasks = @()
# Files the new settings replaced (Target, and Backup: the old file kept beside it, or $null for a new
# file); put back by Restore-PreviousConfig unless the new tasks were registered.
$script:ConfigChanges = @()
$script:NewTasksRegistered = $false
$script:InstallMutex = $null
$script:InstallLog = Join-Path $ConfigDir 'logs\install.log'
$script:Utf8Encoding = New-Object System.Text.UTF8Encoding($false)
$script:ConsoleEncoding = [System.Text.Encoding]::Default
$script:SavedEnvironment = @{}
$script:Interactive = $true

# --- What the technician reads ----------------------------------------------------------------------
# Every line the script itself shows goes through these functions (and Ask/Confirm-Choice for questions),
# so tests/test_windows_install_script.py can find each text and check that it is Russian. What the
# programs print in English goes to the install log (Write-InstallLog), for the administrator; on the
# screen only what is Russian already: the check table, and Windows' own messages (icacls, sc.exe).

function Say([string]$Text) { Write-Host $Text }

function SayStep([string]$Text) {
    Write-Host ''
    Write-Host $Text -ForegroundColor Cyan
}

function SayOk([string]$Text) { Write-Host $Text -ForegroundColor Green }

function SayWarn([string]$Text) { Write-Host $Text -ForegroundColor Yellow }

function SayError([string]$Text) { Write-Host $Text -ForegroundColor Red }

function Fail([string]$Text) {
    # Stops the script: the message is shown once, by the handler at the bottom of the file.
    $script:StopMessage = $Text
    throw $Text
}

function Ask([string]$Text) { return [string](Read-Host -Prompt $Text) }

function Confirm-Choice([string]$Text) {
    if (-not $script:Interactive) { return $false }
    $answer = (Ask "$Text (д/н)").Trim().ToLowerInvariant()
    # "l" is the key of "д" in the Latin layout.
    return ($answer -in @('д', 'да', 'y', 'yes', 'l'))
}

function Write-InstallLog([string]$What, [string[]]$Lines) {
    # The install log, for the administrator: what the programs said, as they said it. Written once the
    # settings folder exists (it is closed to all but administrators); never a reason to stop.
    try {
        $folder = Split-Path -Parent $script:InstallLog
        if (-not (Test-Path -LiteralPath $folder -PathType Container)) { return }
        $builder = New-Object System.Text.StringBuilder
        [void]$builder.Append((Get-Date -Format 'yyyy-MM-dd HH:mm:ss') + ' ' + $What + "`r`n")
        foreach ($block in @($Lines)) {
            if ($null -eq $block) { continue }
            foreach ($line in ($block -split "`r?`n")) {
                if ($line.Trim()) { [void]$builder.Append('    ' + $line + "`r`n") }
            }
        }
        [IO.File]::AppendAllText($script:InstallLog, $builder.ToString(), $script:Utf8Encoding)
    } catch {
        # A log that cannot be written leaves the screen as the only record.
    }
}

function Show-ProgramOutput([string[]]$Lines) {
    Write-InstallLog 'shown on the screen:' $Lines
    foreach ($block in $Lines) {
        if ($null -eq $block) { continue }
        foreach ($line in ($block -split "`r?`n")) {
            if ($line.Trim()) { Write-Host ('    ' + $line) }
        }
    }
}

function Show-InstallLogHint {
    Say "Подробности для администратора — в журнале установки $($script:InstallLog)."
}

function Join-RussianList([string[]]$Items, [string]$Last = 'и') {
    # "3.10, 3.11 и 3.12"; with -Last 'или': "3.12 или 3.13"
    $list = @($Items)
    if ($list.Count -le 1) { return ($list -join '') }
    return (($list[0..($list.Count - 2)] -join ', ') + " $Last " + $list[$list.Count - 1])
}

function Get-CountText([int]$Count, [string]$One, [string]$Few, [string]$Many) {
    # "1 точка", "3 проверки", "11 проверок", "21 точка": the Russian plural by the last two digits.
    $lastTwo = $Count % 100
    $last = $Count % 10
    if ($lastTwo -ge 11 -and $lastTwo -le 14) { return "$Count $Many" }
    if ($last -eq 1) { return "$Count $One" }
    if ($last -ge 2 -and $last -le 4) { return "$Count $Few" }
    return "$Count $Many"
}

function Get-BitsLabel([int]$Bits) {
    if ($Bits -eq 64) { return '64-разрядный' }
    return '32-разрядный'
}

# --- Running programs --------------------------------------------------------------------------------

function ConvertTo-CommandLineArgument([string]$Value) {
    # Quotes one argument the way the C runtime splits a command line (CommandLineToArgvW's rules):
    # backslashes are literal except before a quote, where they are doubled.
    if ($Value -eq '') { return '""' }
    if ($Value -notmatch '[\s"]') { return $Value }
    $builder = New-Object System.Text.StringBuilder
    [void]$builder.Append('"')
    $backslashes = 0
    foreach ($character in $Value.ToCharArray()) {
        if ($character -eq [char]'\') {
            $backslashes++
            continue
        }
        if ($character -eq [char]'"') {
            [void]$builder.Append('\' * (2 * $backslashes + 1))
            [void]$builder.Append('"')
        } else {
            [void]$builder.Append('\' * $backslashes)
            [void]$builder.Append($character)
        }
        $backslashes = 0
    }
    [void]$builder.Append('\' * (2 * $backslashes))
    [void]$builder.Append('"')
    return $builder.ToString()
}

function Join-CommandLine([string[]]$ArgumentList) {
    return ((@($ArgumentList) | ForEach-Object { ConvertTo-CommandLineArgument $_ }) -join ' ')
}

function ConvertFrom-CommandLine([string]$CommandLine) {
    # The reverse of Join-CommandLine, by the same rules: the arguments of a registered task, one by one.
    $arguments = @()
    $current = New-Object System.Text.StringBuilder
    $inQuotes = $false
    $started = $false
    $backslashes = 0
    foreach ($character in $CommandLine.ToCharArray()) {
        if ($character -eq [char]'\') {
            $backslashes++
            $started = $true
            continue
        }
        if ($character -eq [char]'"') {
            # 2n backslashes and a quote: n backslashes, and the quote opens or closes; 2n+1: a literal quote.
            [void]$current.Append('\' * (($backslashes - ($backslashes % 2)) / 2))
            if ($backslashes % 2 -eq 1) { [void]$current.Append('"') } else { $inQuotes = -not $inQuotes }
            $backslashes = 0
            $started = $true
            continue
        }
        [void]$current.Append('\' * $backslashes)
        $backslashes = 0
        if (-not $inQuotes -and ($character -eq [char]' ' -or $character -eq [char]"`t")) {
            if ($started) { $arguments += $current.ToString() }
            [void]$current.Clear()
            $started = $false
            continue
        }
        [void]$current.Append($character)
        $started = $true
    }
    [void]$current.Append('\' * $backslashes)
    if ($started) { $arguments += $current.ToString() }
    return $arguments
}

function Get-OptionValue([string[]]$ArgumentList = @(), [string]$Option) {
    # The value of "--option value" or "--option=value" in a list of arguments; '' when it is not there.
    for ($index = 0; $index -lt $ArgumentList.Count; $index++) {
        $argument = $ArgumentList[$index]
        if ($argument -eq $Option -and $index + 1 -lt $ArgumentList.Count) { return $ArgumentList[$index + 1] }
        if ($argument.StartsWith("$Option=")) { return $argument.Substring($Option.Length + 1) }
    }
    return ''
}

function Invoke-Program {
    # Runs a program and returns its exit code, standard output and standard error. Both streams are
    # read in full: Windows PowerShell turns a native program's standard error into error records, and
    # with $ErrorActionPreference = 'Stop' the first warning pip prints would end the script.
    # -FromPython: the program is Python, whose output is UTF-8 (PYTHONIOENCODING, set at the start);
    # other programs' output is read in the console's code page.
    param(
        [Parameter(Mandatory = $true)][string]$FilePath,
        [string[]]$ArgumentList = @(),
        [string]$WorkingDirectory,
        [switch]$FromPython,
        [int]$TimeoutSeconds = 900
    )
    $info = New-Object System.Diagnostics.ProcessStartInfo
    $info.FileName = $FilePath
    $info.Arguments = Join-CommandLine $ArgumentList
    $info.UseShellExecute = $false
    $info.CreateNoWindow = $true
    $info.RedirectStandardOutput = $true
    $info.RedirectStandardError = $true
    if ($WorkingDirectory) { $info.WorkingDirectory = $WorkingDirectory }
    $encoding = $script:ConsoleEncoding
    if ($FromPython) { $encoding = $script:Utf8Encoding }
    $info.StandardOutputEncoding = $encoding
    $info.StandardErrorEncoding = $encoding
    $previousConsoleEncoding = $null
    if ($FromPython) {
        try {
            $previousConsoleEncoding = [Console]::OutputEncoding
            [Console]::OutputEncoding = $script:Utf8Encoding
        } catch {
            $previousConsoleEncoding = $null
        }
    }
    $process = $null
    try {
        $process = [System.Diagnostics.Process]::Start($info)
        $standardOutput = $process.StandardOutput.ReadToEndAsync()
        $standardError = $process.StandardError.ReadToEndAsync()
        # Short waits, not one long one: PowerShell acts on Ctrl+C only between statements, and a trial run
        # can take minutes.
        $deadline = (Get-Date).AddSeconds($TimeoutSeconds)
        while (-not $process.WaitForExit(250)) {
            if ((Get-Date) -gt $deadline) {
                Fail "Программа $FilePath работала дольше $TimeoutSeconds с и была остановлена."
            }
        }
        $process.WaitForExit()
        return [pscustomobject]@{
            ExitCode = $process.ExitCode
            Output   = [string]$standardOutput.Result
            Errors   = [string]$standardError.Result
        }
    } finally {
        # Stopped by the timeout or by Ctrl+C: the program must not go on holding a register's port or the venv.
        if ($null -ne $process -and -not $process.HasExited) {
            try { $process.Kill() } catch { }
        }
        if ($null -ne $previousConsoleEncoding) {
            try { [Console]::OutputEncoding = $previousConsoleEncoding } catch { }
        }
    }
}

function ConvertTo-FullPath([string]$Path) {
    # Relative to the current folder of this window, not of the process: an elevated copy of the script
    # starts in C:\Windows\System32.
    return $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($Path)
}

# --- Start: console, rights, one run at a time -------------------------------------------------------

function Initialize-Session {
    try { $script:ConsoleEncoding = [Console]::OutputEncoding } catch { }
    foreach ($name in @('PYTHONIOENCODING', 'PYTHONUTF8')) {
        $script:SavedEnvironment[$name] = [Environment]::GetEnvironmentVariable($name, 'Process')
    }
    $env:PYTHONIOENCODING = 'utf-8'
    $env:PYTHONUTF8 = '1'
    try { $script:Interactive = [Environment]::UserInteractive -and -not [Console]::IsInputRedirected } catch { }
}

function Restore-Session {
    foreach ($name in @($script:SavedEnvironment.Keys)) {
        [Environment]::SetEnvironmentVariable($name, $script:SavedEnvironment[$name], 'Process')
    }
}

function Enter-SingleRun {
    # A named mutex, held until the script ends (Exit-SingleRun); Windows releases it if the process dies.
    $mutex = New-Object System.Threading.Mutex($false, $InstallMutexName)
    $owned = $false
    try {
        $owned = $mutex.WaitOne(0)
    } catch [System.Threading.AbandonedMutexException] {
        # The run that held it ended without letting go (its window was closed): it is ours now.
        $owned = $true
    }
    if (-not $owned) {
        $mutex.Dispose()
        Fail 'Установка sitewatch уже идёт в другом окне (или там идёт удаление). Дождитесь, пока она закончится, и при необходимости запустите install.cmd ещё раз.'
    }
    $script:InstallMutex = $mutex
}

function Exit-SingleRun {
    if ($null -eq $script:InstallMutex) { return }
    try { $script:InstallMutex.ReleaseMutex() } catch { }
    $script:InstallMutex.Dispose()
    $script:InstallMutex = $null
}

function Test-Administrator {
    $identity = [Security.Principal.WindowsIdentity]::GetCurrent()
    $principal = New-Object Security.Principal.WindowsPrincipal($identity)
    return $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
}

function Assert-WindowsVersion {
    $hasTasks = Get-Command -Name 'Register-ScheduledTask' -ErrorAction SilentlyContinue
    if ($PSVersionTable.PSVersion.Major -lt 5 -or -not $hasTasks) {
        Fail 'Этот компьютер не подходит: нужна Windows 10 или 11 (или Windows Server 2016 и новее) с Windows PowerShell 5.1.'
    }
}

function Restart-Elevated {
    # Paths given relative to this window's folder are made absolute first: the new window starts elsewhere.
    foreach ($name in @('Config', 'InstallDir', 'ConfigDir', 'WebConfigFile', 'Python')) {
        if ($script:Bound.ContainsKey($name) -and $script:Bound[$name] -and $script:Bound[$name] -ne 'none') {
            $script:Bound[$name] = ConvertTo-FullPath $script:Bound[$name]
        }
    }
    $parts = @('-NoProfile', '-ExecutionPolicy', 'Bypass', '-File', $PSCommandPath)
    foreach ($name in @($script:Bound.Keys)) {
        $value = $script:Bound[$name]
        if ($name -eq 'PauseAtEnd') { continue }
        if ($value -is [System.Management.Automation.SwitchParameter]) {
            if ($value.IsPresent) { $parts += "-$name" }
        } elseif ($value -is [array]) {
            # powershell.exe -File passes every argument as one string; the script splits it at commas.
            $parts += "-$name"
            $parts += (@($value) -join ',')
        } else {
            $parts += "-$name"
            $parts += [string]$value
        }
    }
    $parts += '-PauseAtEnd'
    SayWarn 'Для установки нужны права администратора. Сейчас Windows спросит разрешение, и работа продолжится в новом окне.'
    try {
        $elevated = Start-Process -FilePath (Join-Path $PSHOME 'powershell.exe') -ArgumentList (Join-CommandLine $parts) -Verb RunAs -Wait -PassThru
    } catch {
        Fail 'Права администратора не получены. Щёлкните install.cmd правой кнопкой мыши и выберите «Запуск от имени администратора».'
    }
    $script:ExitCode = $elevated.ExitCode
    if ($elevated.ExitCode -eq 0) {
        SayOk 'Работа в окне администратора закончилась успешно.'
    } else {
        SayError "Работа в окне администратора закончилась с ошибкой (код $($elevated.ExitCode)). Подробности были в том окне."
    }
}

# --- The bundle: which Pythons its wheels are for ----------------------------------------------------

function Test-WheelTags($Tags, [int]$Minor, [string]$Platform) {
    # One wheel's tags (python-abi-platform, each possibly dotted) against CPython 3.<Minor> on <Platform>.
    if (-not (($Tags.Platform -contains 'any') -or ($Tags.Platform -contains $Platform))) { return $false }
    foreach ($abi in $Tags.Abi) {
        foreach ($pythonTag in $Tags.Python) {
            if ($abi -eq 'none') {
                if ($pythonTag -eq 'py3' -or $pythonTag -eq "cp3$Minor") { return $true }
                if ($pythonTag -match '^py3(\d+)$' -and [int]$Matches[1] -le $Minor) { return $true }
            } elseif ($abi -eq 'abi3') {
                if ($pythonTag -match '^cp3(\d+)$' -and [int]$Matches[1] -le $Minor) { return $true }
            } elseif ($abi -eq "cp3$Minor" -and $pythonTag -eq "cp3$Minor") {
                return $true
            }
        }
    }
    return $false
}

function Get-BundleSupport([string]$WheelsDir) {
    # Every (Python version, bitness) for which each package in the folder has a wheel that installs.
    $wheelFiles = @(Get-ChildItem -LiteralPath $WheelsDir -Filter '*.whl' -File)
    $packages = @{}
    foreach ($file in $wheelFiles) {
        $parts = $file.BaseName.Split('-')
        if ($parts.Count -lt 5) { continue }
        $package = $parts[0].ToLowerInvariant().Replace('_', '-')
        $tags = [pscustomobject]@{
            Python   = $parts[$parts.Count - 3].Split('.')
            Abi      = $parts[$parts.Count - 2].Split('.')
            Platform = $parts[$parts.Count - 1].Split('.')
        }
        if (-not $packages.ContainsKey($package)) { $packages[$package] = @() }
        $packages[$package] += $tags
    }
    if (-not $packages.ContainsKey('sitewatch')) {
        Fail "В папке $WheelsDir нет пакета sitewatch: комплект собран не полностью. Скачайте комплект заново."
    }
    $support = @()
    # The build checked with pip which targets the folder serves and wrote them into requirements.txt
    # ("# Verified for: win32 cp310, win_amd64 cp310, ..."); that line is the answer when it is there.
    $requirements = Join-Path $WheelsDir 'requirements.txt'
    if (Test-Path -LiteralPath $requirements -PathType Leaf) {
        $verified = @(Get-Content -LiteralPath $requirements | Where-Object { $_ -match '^#\s*Verified for:' })
        if ($verified.Count -gt 0) {
            foreach ($match in [regex]::Matches($verified[0], '(win32|win_amd64) cp3(\d+)')) {
                $bits = 32
                if ($match.Groups[1].Value -eq 'win_amd64') { $bits = 64 }
                $support += [pscustomobject]@{ Minor = [int]$match.Groups[2].Value; Bits = $bits }
            }
            if (@($support).Count -gt 0) { return $support }
        }
    }
    # Otherwise from the wheels' names: a target is served when every package has a wheel for it.
    foreach ($minor in $MinimumPythonMinor..20) {
        foreach ($platform in @('win_amd64', 'win32')) {
            $complete = $true
            foreach ($package in $packages.Keys) {
                $found = $false
                foreach ($tags in $packages[$package]) {
                    if (Test-WheelTags $tags $minor $platform) { $found = $true; break }
                }
                if (-not $found) { $complete = $false; break }
            }
            if ($complete) {
                $bits = 32
                if ($platform -eq 'win_amd64') { $bits = 64 }
                $support += [pscustomobject]@{ Minor = $minor; Bits = $bits }
            }
        }
    }
    if (@($support).Count -eq 0) {
        Fail "Пакеты в папке $WheelsDir не подходят ни к одной версии Python для Windows: комплект собран неправильно."
    }
    return $support
}

function Get-VersionRange([int[]]$Minors) {
    # "3.10–3.14" for versions in a row, "3.10, 3.12 и 3.13" otherwise.
    $sorted = @($Minors | Sort-Object -Unique)
    if ($sorted.Count -eq 1) { return "3.$($sorted[0])" }
    if ($sorted[$sorted.Count - 1] - $sorted[0] + 1 -eq $sorted.Count) { return "3.$($sorted[0])–3.$($sorted[$sorted.Count - 1])" }
    return (Join-RussianList @($sorted | ForEach-Object { "3.$_" }))
}

function Get-SupportText($Support) {
    # "Python 3.10–3.14 (64-разрядного) и 3.10–3.13 (32-разрядного)", from what the bundle holds.
    $parts = @()
    foreach ($bits in @(64, 32)) {
        $minors = @($Support | Where-Object { $_.Bits -eq $bits } | ForEach-Object { $_.Minor })
        if ($minors.Count -gt 0) { $parts += "$(Get-VersionRange $minors) ($bits-разрядного)" }
    }
    return "Python $(Join-RussianList $parts)"
}

# --- Python -------------------------------------------------------------------------------------------

function Get-PythonInfo([string]$Path) {
    # Asks the interpreter itself: the version, the bitness, where it lives, and whether venv works.
    $probe = 'import sys, struct, venv, ensurepip; print(sys.version_info[0], sys.version_info[1], struct.calcsize(''P'') * 8); print(sys.executable); print(sys.base_prefix); print(sys.prefix)'
    try {
        $result = Invoke-Program -FilePath $Path -ArgumentList @('-X', 'utf8', '-c', $probe) -FromPython -TimeoutSeconds 60
    } catch {
        $script:StopMessage = $null
        return $null
    }
    if ($result.ExitCode -ne 0) { return $null }
    $lines = @($result.Output -split "`r?`n" | Where-Object { $_.Trim() })
    if ($lines.Count -lt 4) { return $null }
    $numbers = @($lines[0].Trim().Split(' '))
    if ($numbers.Count -ne 3 -or $numbers[0] -ne '3') { return $null }
    $basePrefix = $lines[2].Trim()
    $usersRoot = Split-Path -Parent $env:USERPROFILE
    return [pscustomobject]@{
        Path       = $lines[1].Trim()
        Minor      = [int]$numbers[1]
        Bits       = [int]$numbers[2]
        BasePrefix = $basePrefix
        IsVenv     = ($lines[3].Trim() -ne $basePrefix)
        PerUser    = ($basePrefix.StartsWith($usersRoot + '\', [StringComparison]::OrdinalIgnoreCase))
        FromStore  = ($basePrefix.IndexOf('\WindowsApps\', [StringComparison]::OrdinalIgnoreCase) -ge 0)
    }
}

function Get-PythonCandidates {
    $paths = @()
    $launcher = Get-Command -Name 'py.exe' -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
    if ($launcher) {
        # py -0p lists every registered Python with its path; py -3 names the launcher's own choice.
        try {
            $listing = Invoke-Program -FilePath $launcher.Path -ArgumentList @('-0p') -FromPython -TimeoutSeconds 60
            if ($listing.ExitCode -eq 0) {
                foreach ($line in ($listing.Output -split "`r?`n")) {
                    if ($line -match '([A-Za-z]:\\.*?pythonw?\.exe)') { $paths += $Matches[1] }
                }
            }
            $default = Invoke-Program -FilePath $launcher.Path -ArgumentList @('-3', '-c', 'import sys; print(sys.executable)') -FromPython -TimeoutSeconds 60
            if ($default.ExitCode -eq 0 -and $default.Output.Trim()) { $paths += $default.Output.Trim() }
        } catch {
            # A broken launcher only means one place fewer to look.
            $script:StopMessage = $null
        }
    }
    $patterns = @()
    foreach ($root in @($env:ProgramW6432, $env:ProgramFiles, ${env:ProgramFiles(x86)})) {
        if ($root) { $patterns += (Join-Path $root 'Python3*\python.exe') }
    }
    if ($env:LOCALAPPDATA) { $patterns += (Join-Path $env:LOCALAPPDATA 'Programs\Python\Python3*\python.exe') }
    $patterns += (Join-Path $env:SystemDrive 'Python3*\python.exe')
    foreach ($pattern in $patterns) {
        foreach ($file in @(Get-ChildItem -Path $pattern -File -ErrorAction SilentlyContinue)) { $paths += $file.FullName }
    }
    $unique = @{}
    foreach ($path in $paths) { $unique[$path.ToLowerInvariant()] = $path }
    return @($unique.Values)
}

function Get-PythonRejection($Info, $Support, [bool]$Explicit) {
    # Why this Python cannot carry the agent, or '' when it can.
    $fits = @($Support | Where-Object { $_.Minor -eq $Info.Minor -and $_.Bits -eq $Info.Bits }).Count -gt 0
    if (-not $fits) { return 'для этой версии и разрядности в комплекте нет пакетов' }
    if ($Info.IsVenv) { return 'это окружение другой программы, а не сам Python' }
    if ($Info.FromStore) { return 'он установлен из Microsoft Store, и задачи, которые работают от имени системной учётной записи (СИСТЕМА), его не увидят' }
    if ($Info.PerUser -and -not $Explicit) { return 'он установлен только для одного пользователя' }
    return ''
}

function Find-Python($Support) {
    if ($Python) {
        return (Find-GivenPython $Support)
    }
    $seen = @{}
    $usable = @()
    $rejected = @()
    foreach ($candidate in @(Get-PythonCandidates)) {
        if (-not $candidate -or -not (Test-Path -LiteralPath $candidate -PathType Leaf)) { continue }
        $info = Get-PythonInfo $candidate
        if ($null -eq $info) { continue }
        $key = $info.Path.ToLowerInvariant()
        if ($seen.ContainsKey($key)) { continue }
        $seen[$key] = $true
        $reason = Get-PythonRejection $info $Support $false
        if ($reason) {
            $rejected += "$($info.Path) — Python 3.$($info.Minor), $(Get-BitsLabel $info.Bits): $reason"
        } else {
            $usable += $info
        }
    }
    if (@($usable).Count -gt 0) {
        $preferBits = 32
        if ([Environment]::Is64BitOperatingSystem) { $preferBits = 64 }
        return @($usable | Sort-Object -Property @{ Expression = { $_.Minor }; Descending = $true }, @{ Expression = { [int]($_.Bits -eq $preferBits) }; Descending = $true })[0]
    }
    SayError 'Не найден Python, на который можно поставить агент.'
    if (@($rejected).Count -gt 0) {
        Say 'Найдены, но не подходят:'
        foreach ($line in $rejected) { Say "  $line" }
    }
    Show-PythonAdvice $Support
    Fail 'Установка остановлена: нужен Python.'
}

function Find-GivenPython($Support) {
    # -Python names one interpreter: it is used, or the technician is told what is wrong with it.
    $given = ConvertTo-FullPath $Python
    $reason = ''
    $info = $null
    if (Test-Path -LiteralPath $given -PathType Container) {
        $reason = "это папка, а нужен путь к самой программе, например $(Join-Path $given 'python.exe')"
    } elseif (-not (Test-Path -LiteralPath $given -PathType Leaf)) {
        $reason = 'такого файла нет'
    } else {
        $info = Get-PythonInfo $given
        if ($null -eq $info) {
            $reason = 'он не запускается, это не Python 3 или в нём нет модулей venv и ensurepip'
        } else {
            $reason = Get-PythonRejection $info $Support $true
        }
    }
    if (-not $reason) {
        if ($info.PerUser) {
            SayWarn 'Этот Python установлен только для одного пользователя. Агент перестанет работать, если удалить его учётную запись.'
        }
        return $info
    }
    SayError "Python, указанный ключом -Python, не подходит: $given — $reason."
    Say 'Укажите другой python.exe или не указывайте -Python: скрипт сам поищет подходящий Python.'
    Show-PythonAdvice $Support
    Fail 'Установка остановлена: нужен Python.'
}

function Show-PythonAdvice($Support) {
    $bits = 64
    if (-not [Environment]::Is64BitOperatingSystem) { $bits = 32 }
    $advised = @()
    foreach ($minor in $AdvisedPythonMinors) {
        if (@($Support | Where-Object { $_.Minor -eq $minor -and $_.Bits -eq $bits }).Count -gt 0) { $advised += "3.$minor" }
    }
    if ($advised.Count -eq 0) {
        $newest = @($Support | Where-Object { $_.Bits -eq $bits } | Sort-Object Minor -Descending)
        if ($newest.Count -eq 0) { $newest = @($Support | Sort-Object Minor -Descending) }
        $advised = @("3.$($newest[0].Minor)")
    }
    Say "Пакеты комплекта подходят для $(Get-SupportText $Support)."
    Say 'Что сделать:'
    Say "  1. Скачайте Python $(Join-RussianList $advised 'или') ($(Get-BitsLabel $bits)) с python.org, раздел Windows installer: на странице https://www.python.org/downloads/windows/ у нужной версии ссылка «Windows installer ($bits-bit)»."
    Say "  2. Запустите его, нажмите «Customize installation», затем «Next», на следующем экране отметьте «Install Python $($advised[$advised.Count - 1]) for all users» (номер версии — как у скачанного установщика) и нажмите «Install»."
    Say '  3. Ставьте именно для всех пользователей: Python, установленный только для себя, лежит в профиле того, кто его ставил, и агент перестанет работать, как только эту учётную запись удалят.'
    Say '  4. Запустите install.cmd ещё раз.'
}

# --- Config -------------------------------------------------------------------------------------------

function Open-InNotepad([string]$File) {
    Say "Открываю $File в Блокноте. Впишите настройки этой точки, сохраните файл и закройте Блокнот."
    Start-Process -FilePath 'notepad.exe' -ArgumentList (ConvertTo-CommandLineArgument $File) | Out-Null
    # Not Start-Process -Wait: on Windows 11 notepad.exe may hand the file to the new Notepad and exit at once.
    [void](Ask 'Когда сохраните файл, нажмите Enter')
}

function Get-ExampleConfig([string]$BundleDir) {
    # The bundle ships pusher-site.yml (a site behind NAT) and exporter-site.yml (a till PC the office
    # polls), both with Russian comments. The pusher's example has the push section Pusher and Both need.
    $examples = Join-Path $BundleDir 'examples'
    $names = @('pusher-site.yml')
    if ($Mode -eq 'Exporter') { $names = @('exporter-site.yml', 'pusher-site.yml') }
    foreach ($name in $names) {
        $path = Join-Path $examples $name
        if (Test-Path -LiteralPath $path -PathType Leaf) { return $path }
    }
    return $null
}

function Get-ReferencedFiles([string]$SourceFile) {
    # Files a config names by a relative path ({file: shop-101.password}, tls: {ca_file: ca.pem},
    # key_file: key, hours_file:, targets_file:; a web config's cert_file: and key_file:) are read from
    # its folder, so they go where it goes. Only those that are there: a missing one is named by the check
    # of the settings further on. Plain Get-Content: it recognises a byte order mark, and the names are Latin.
    $sourceFolder = Split-Path -Parent $SourceFile
    $found = @()
    foreach ($line in @(Get-Content -LiteralPath $SourceFile)) {
        $code = $line -replace $YamlCommentPattern, ''
        foreach ($match in [regex]::Matches($code, $RelativeFilePattern)) {
            $relative = $match.Groups[1].Value.Trim().Trim('"', "'")
            # {env: NAME} and enc:... are not files; an absolute path is read where it is.
            if (-not $relative -or $relative.StartsWith('{') -or $relative -match '^(env|enc):') { continue }
            if ([IO.Path]::IsPathRooted($relative) -or $relative.Contains('..')) { continue }
            if (-not (Test-Path -LiteralPath (Join-Path $sourceFolder $relative) -PathType Leaf)) { continue }
            if ($found -notcontains $relative) { $found += $relative }
        }
    }
    return $found
}

function Test-SameFile([string]$First, [string]$Second) {
    if (-not (Test-Path -LiteralPath $First -PathType Leaf) -or -not (Test-Path -LiteralPath $Second -PathType Leaf)) { return $false }
    $firstBytes = [IO.File]::ReadAllBytes($First)
    $secondBytes = [IO.File]::ReadAllBytes($Second)
    return ([Convert]::ToBase64String($firstBytes) -ceq [Convert]::ToBase64String($secondBytes))
}

function Test-ConfigDiffers([string]$Source, [string]$Target) {
    # The settings beside install.cmd differ from the computer's when site.yml does, or a file it names.
    if (-not (Test-SameFile $Source $Target)) { return $true }
    $sourceFolder = Split-Path -Parent $Source
    foreach ($relative in @(Get-ReferencedFiles $Source)) {
        if (-not (Test-SameFile (Join-Path $sourceFolder $relative) (Join-Path $ConfigDir $relative))) { return $true }
    }
    return $false
}

function Copy-ConfigFile([string]$From, [string]$To) {
    # Copies one file of the settings, keeping the one it replaces as <name>.bak so that
    # Restore-PreviousConfig can put it back. False when the file there is the same already.
    if (Test-SameFile $From $To) { return $false }
    New-Item -ItemType Directory -Force -Path (Split-Path -Parent $To) | Out-Null
    $backup = $null
    if (Test-Path -LiteralPath $To -PathType Leaf) {
        $backup = "$To.bak"
        Copy-Item -LiteralPath $To -Destination $backup -Force
    }
    $script:ConfigChanges += [pscustomobject]@{ Target = $To; Backup = $backup }
    Copy-Item -LiteralPath $From -Destination $To -Force
    return $true
}

function Select-ConfigSource([string]$BundleDir) {
    # Where new settings come from: -Config, or site.yml beside install.cmd (the guide says to put it there);
    # $null keeps the settings this computer has. Nothing is copied yet: see Install-NewConfig.
    $target = Join-Path $ConfigDir 'site.yml'
    if ($Config) {
        $source = ConvertTo-FullPath $Config
        if (-not (Test-Path -LiteralPath $source -PathType Leaf)) { Fail "Файл настроек $source не найден." }
        if ($source -eq $target) { return $null }
        return $source
    }
    $beside = Join-Path $BundleDir 'site.yml'
    if (-not (Test-Path -LiteralPath $beside -PathType Leaf)) { return $null }
    if (-not (Test-Path -LiteralPath $target -PathType Leaf)) { return $beside }
    if (-not (Test-ConfigDiffers $beside $target)) { return $null }
    SayWarn "Рядом с install.cmd лежит site.yml, и он отличается от настроек на этом компьютере ($target)."
    if (-not $script:Interactive) {
        SayWarn 'Спросить, какие оставить, негде (скрипт запущен без окна), поэтому остаются настройки, которые уже есть на компьютере. Заменить их: install.cmd -Config site.yml'
        return $null
    }
    if (Confirm-Choice 'Заменить настройки на компьютере файлом site.yml из папки установки?') { return $beside }
    Say 'Остаются настройки, которые уже есть на компьютере.'
    return $null
}

function Initialize-Config([string]$BundleDir) {
    # Makes the settings folder, closes it, and decides where the settings come from. New settings are put
    # in place later (Install-NewConfig), once the program that checks them is installed; only on a first
    # install, with nothing to check against, does the example go straight into place for Notepad.
    $target = Join-Path $ConfigDir 'site.yml'
    New-Item -ItemType Directory -Force -Path $ConfigDir | Out-Null
    New-Item -ItemType Directory -Force -Path (Join-Path $ConfigDir 'logs') | Out-Null
    Protect-ConfigFolder
    $source = Select-ConfigSource $BundleDir
    if ($source) {
        Say "Новые настройки: $source (их проверят, когда программа будет установлена)."
        return $source
    }
    if (Test-Path -LiteralPath $target -PathType Leaf) {
        Say "Настройки: $target (уже были на этом компьютере)."
        return $null
    }
    if (-not $script:Interactive) {
        Fail "Файла настроек $target ещё нет. Укажите готовый файл: -Config путь\site.yml"
    }
    $example = Get-ExampleConfig $BundleDir
    if (-not $example) { Fail "Файла настроек $target ещё нет, а в комплекте нет примера. Укажите готовый файл: -Config путь\site.yml" }
    Copy-Item -LiteralPath $example -Destination $target
    Say "Настроек на этом компьютере ещё нет: в $target скопирован пример $(Split-Path -Leaf $example)."
    Open-InNotepad $target
    return $null
}

function Install-NewConfig([string]$Source) {
    # Puts the new settings where the tasks will read them, the old ones kept beside them (site.yml.bak and
    # <file>.bak), so that they are checked where they will live and can be taken back if they fail.
    $target = Join-Path $ConfigDir 'site.yml'
    if (-not $Source) { return }
    $hadSettings = Test-Path -LiteralPath $target -PathType Leaf
    $replaced = Copy-ConfigFile $Source $target
    $sourceFolder = Split-Path -Parent $Source
    foreach ($relative in @(Get-ReferencedFiles $Source)) {
        if (Copy-ConfigFile (Join-Path $sourceFolder $relative) (Join-Path $ConfigDir $relative)) {
            Say "Вместе с настройками скопирован файл $relative"
        }
    }
    if ($hadSettings -and $replaced) { Say "Прежние настройки сохранены в $target.bak" }
    Say "Настройки: $target (скопированы из $Source)"
}

function Install-WebConfig {
    # The exporter's web config (its passwords, its TLS key) goes into the closed settings folder, with the
    # files it names, and the task reads it there. Returns the path for the task, or '' for none.
    if (-not $WebConfigFile) { return '' }
    $source = ConvertTo-FullPath $WebConfigFile
    $settingsRoot = (ConvertTo-FullPath $ConfigDir).TrimEnd('\') + '\'
    if ($source.StartsWith($settingsRoot, [StringComparison]::OrdinalIgnoreCase)) { return $source }
    $webFolder = Join-Path $ConfigDir 'web'
    $target = Join-Path $webFolder (Split-Path -Leaf $source)
    if (Copy-ConfigFile $source $target) { Say "Файл $source скопирован в $target; задача sitewatch-exporter берёт его оттуда." }
    $sourceFolder = Split-Path -Parent $source
    foreach ($relative in @(Get-ReferencedFiles $source)) {
        if (Copy-ConfigFile (Join-Path $sourceFolder $relative) (Join-Path $webFolder $relative)) {
            Say "Вместе с ним скопирован файл $relative"
        }
    }
    return $target
}

function Restore-PreviousConfig {
    # The new settings did not make it into registered tasks (a check failed, the technician said no, the
    # window was closed): the old ones come back, so the agent resumed next runs as it did before. On a
    # first install there is nothing to go back to: the new settings stay for the next try.
    $changes = @($script:ConfigChanges)
    $script:ConfigChanges = @()
    if ($changes.Count -eq 0) { return }
    $target = Join-Path $ConfigDir 'site.yml'
    $siteChange = @($changes | Where-Object { $_.Target -eq $target })
    if ($siteChange.Count -gt 0 -and -not $siteChange[0].Backup) { return }
    $kept = "$target.new"
    try {
        if ($siteChange.Count -gt 0) { Copy-Item -LiteralPath $target -Destination $kept -Force }
        foreach ($change in $changes) {
            if ($change.Backup) {
                Copy-Item -LiteralPath $change.Backup -Destination $change.Target -Force
            } else {
                Remove-Item -LiteralPath $change.Target -Force
            }
        }
    } catch {
        SayError "Не удалось вернуть прежние настройки: $($_.Exception.Message) Прежний site.yml лежит в $target.bak."
        return
    }
    if ($siteChange.Count -gt 0) {
        SayWarn "Новые настройки не применены и сохранены в $kept. В силе прежние настройки: $target."
    } else {
        SayWarn "Новые файлы настроек не применены: в силе прежние, в папке $ConfigDir."
    }
}

function Protect-ConfigFolder([switch]$Quiet) {
    # Only SYSTEM and Administrators may read the folder: site.yml, the key for enc: values and password
    # files are there. First every file inside goes back to plain inheritance, then the folder keeps
    # only these two entries, which every file inside inherits.
    $icacls = Join-Path $env:SystemRoot 'System32\icacls.exe'
    $reset = Invoke-Program -FilePath $icacls -ArgumentList @($ConfigDir, '/reset', '/T', '/Q')
    if ($reset.ExitCode -ne 0) {
        Show-ProgramOutput @($reset.Output, $reset.Errors)
        Fail "Не удалось закрыть папку $ConfigDir от посторонних (icacls, код $($reset.ExitCode))."
    }
    $grant = Invoke-Program -FilePath $icacls -ArgumentList @($ConfigDir, '/inheritance:r', '/grant:r', "*$($SystemSid):(OI)(CI)F", "*$($AdministratorsSid):(OI)(CI)F", '/Q')
    if ($grant.ExitCode -ne 0) {
        Show-ProgramOutput @($grant.Output, $grant.Errors)
        Fail "Не удалось закрыть папку $ConfigDir от посторонних (icacls, код $($grant.ExitCode))."
    }
    if (-not $Quiet) {
        Say "Папка $ConfigDir открыта только для системной учётной записи (СИСТЕМА) и администраторов: в настройках бывают пароли."
    }
}

function Test-EnvironmentSecrets([string]$ConfigFile) {
    $lines = @(Get-Content -LiteralPath $ConfigFile -Encoding UTF8 | Where-Object { $_ -match '^[^#]*\{\s*env\s*:' })
    if ($lines.Count -gt 0) {
        SayWarn 'В site.yml есть значения вида {env: ИМЯ}. Задачи работают от имени системной учётной записи (СИСТЕМА), и переменных окружения этого окна у них не будет.'
        SayWarn "Такие пароли запишите как enc: (команда sitewatch-exporter encrypt) или как {file: имя-файла} с файлом в папке $ConfigDir."
    }
}

# --- Tasks, processes, the old ways of running -------------------------------------------------------

function Get-AgentTask([string]$Name, [string]$Folder = $TaskFolder) {
    return (Get-ScheduledTask -TaskPath $Folder -TaskName $Name -ErrorAction SilentlyContinue)
}

function Get-TaskAction([string]$Name) {
    # The program a task of ours starts: Execute, Arguments, WorkingDirectory; $null without the task.
    $task = Get-AgentTask $Name
    if (-not $task) { return $null }
    $actions = @($task.Actions)
    if ($actions.Count -eq 0) { return $null }
    return $actions[0]
}

function Get-TaskArguments([string]$Name) {
    $action = Get-TaskAction $Name
    if ($null -eq $action -or -not $action.Arguments) { return }
    return (ConvertFrom-CommandLine ([string]$action.Arguments))
}

function Get-CurrentMode {
    # The mode an earlier install left, by its tasks; '' when there are none.
    $hasPusher = $null -ne (Get-AgentTask $PusherTask)
    $hasExporter = $null -ne (Get-AgentTask $ExporterTask)
    if ($hasPusher -and $hasExporter) { return 'Both' }
    if ($hasPusher) { return 'Pusher' }
    if ($hasExporter) { return 'Exporter' }
    return ''
}

function Stop-AgentProcesses {
    # Stopping a task ends the program it started; what is left of the venv's processes (the interpreter
    # the launcher started, a copy someone ran by hand) would keep its files locked, so it is ended too.
    $venv = (Join-Path $InstallDir 'venv') + '\'
    $deadline = (Get-Date).AddSeconds(15)
    while ($true) {
        $running = @(Get-CimInstance -ClassName Win32_Process | Where-Object {
                $_.ProcessId -ne $PID -and (
                    ($_.ExecutablePath -and $_.ExecutablePath.StartsWith($venv, [StringComparison]::OrdinalIgnoreCase)) -or
                    ($_.CommandLine -and $_.CommandLine.IndexOf($venv, [StringComparison]::OrdinalIgnoreCase) -ge 0))
            })
        if ($running.Count -eq 0) { return }
        if ((Get-Date) -gt $deadline) {
            foreach ($process in $running) { Stop-Process -Id $process.ProcessId -Force -ErrorAction SilentlyContinue }
            Start-Sleep -Seconds 1
            return
        }
        Start-Sleep -Milliseconds 500
    }
}

function Suspend-AgentTasks {
    # Disabled first, so the watchdog trigger does not start the agent again while pip replaces its files
    # and while the trial run uses the registers' ports. Given back by Resume-SuspendedTasks, which the
    # script's finally block runs however the script ends, unless new tasks took their place.
    foreach ($name in @($ExporterTask, $PusherTask)) {
        $task = Get-AgentTask $name
        if (-not $task) { continue }
        if ("$($task.State)" -ne 'Disabled') { $script:SuspendedTasks += $name }
        Disable-ScheduledTask -TaskPath $TaskFolder -TaskName $name | Out-Null
        Stop-ScheduledTask -TaskPath $TaskFolder -TaskName $name
        Say "Задача $name остановлена на время установки."
    }
    Stop-AgentProcesses
}

function Resume-SuspendedTasks {
    $names = @($script:SuspendedTasks)
    $script:SuspendedTasks = @()
    foreach ($name in $names) {
        try {
            Enable-ScheduledTask -TaskPath $TaskFolder -TaskName $name | Out-Null
            Start-ScheduledTask -TaskPath $TaskFolder -TaskName $name
            SayWarn "Прежняя задача $name снова включена и запущена."
        } catch {
            SayError "Не удалось снова включить задачу ${name}: $($_.Exception.Message)"
        }
    }
}

function Remove-AgentTask([string]$Name, [string]$Folder = $TaskFolder) {
    $task = Get-AgentTask $Name $Folder
    if (-not $task) { return $false }
    Disable-ScheduledTask -TaskPath $Folder -TaskName $Name | Out-Null
    Stop-ScheduledTask -TaskPath $Folder -TaskName $Name
    Unregister-ScheduledTask -TaskPath $Folder -TaskName $Name -Confirm:$false
    return $true
}

function Remove-LegacyAgents {
    # examples\windows\install-service.ps1 could make Windows services through NSSM, and docs told how to
    # make a "sitewatch-pusher" task in the root folder. Both would run beside the new tasks.
    foreach ($name in @($ExporterTask, $PusherTask)) {
        $service = Get-Service -Name $name -ErrorAction SilentlyContinue
        if (-not $service) { continue }
        SayWarn "Найдена служба Windows «$name» от прежнего способа установки агента: останавливаю и удаляю её."
        if ("$($service.Status)" -ne 'Stopped') { Stop-Service -Name $name -Force }
        $deleted = Invoke-Program -FilePath (Join-Path $env:SystemRoot 'System32\sc.exe') -ArgumentList @('delete', $name)
        if ($deleted.ExitCode -ne 0) {
            Show-ProgramOutput @($deleted.Output, $deleted.Errors)
            Fail "Не удалось удалить службу «$name» (sc.exe, код $($deleted.ExitCode)). Удалите её сами и запустите установку ещё раз."
        }
    }
    if (Remove-AgentTask $PusherTask '\') {
        SayWarn "Удалена задача планировщика \$PusherTask от прежнего способа установки агента."
    }
}

function Remove-TaskFolder {
    # Unregister-ScheduledTask leaves the empty \sitewatch folder behind; the scheduler's own API removes it.
    try {
        $scheduler = New-Object -ComObject 'Schedule.Service'
        $scheduler.Connect()
        $scheduler.GetFolder('\').DeleteFolder($TaskFolder.Trim('\'), 0)
    } catch {
        # No such folder, or other tasks are still in it: nothing to remove then.
    }
}

function Register-AgentTask([string]$Name, [string]$Executable, [string[]]$ArgumentList, [string]$Description) {
    # The program's path in quotes: "C:\Program Files\..." has a space.
    $action = New-ScheduledTaskAction -Execute ('"' + $Executable + '"') -Argument (Join-CommandLine $ArgumentList) -WorkingDirectory $ConfigDir
    $atStartup = New-ScheduledTaskTrigger -AtStartup
    # Task Scheduler's "restart on failure" covers an action that could not be started, not a program
    # that started and then exited. So a second trigger fires every minute, for ever, and with
    # MultipleInstances IgnoreNew it only starts the agent when it is not running: a crashed agent is
    # back within a minute. No RepetitionDuration: an empty duration repeats indefinitely. It begins a
    # minute from now, so it does not race the Start-ScheduledTask that follows the registration.
    $watchdog = New-ScheduledTaskTrigger -Once -At (Get-Date).AddMinutes(1) -RepetitionInterval (New-TimeSpan -Minutes 1)
    $principal = New-ScheduledTaskPrincipal -UserId $SystemSid -LogonType ServiceAccount -RunLevel Highest
    # ExecutionTimeLimit zero: no limit (the default stops a task after 3 days). The priority stays the
    # scheduler's default 7 (below normal): the till's own programs come first.
    $settings = New-ScheduledTaskSettingsSet -ExecutionTimeLimit ([TimeSpan]::Zero) -MultipleInstances IgnoreNew `
        -RestartCount 3 -RestartInterval (New-TimeSpan -Minutes 1) -StartWhenAvailable `
        -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries
    Register-ScheduledTask -TaskPath $TaskFolder -TaskName $Name -Action $action -Trigger @($atStartup, $watchdog) `
        -Principal $principal -Settings $settings -Description $Description -Force | Out-Null
    # This task has its new definition, enabled: there is no old one left to give back if something fails.
    $script:SuspendedTasks = @($script:SuspendedTasks | Where-Object { $_ -ne $Name })
}

function Start-AgentTask([string]$Name) {
    if ("$((Get-AgentTask $Name).State)" -ne 'Running') {
        Start-ScheduledTask -TaskPath $TaskFolder -TaskName $Name
    }
    Say "Задача $TaskFolder$Name зарегистрирована и запущена."
}

function Get-TaskResultCode([string]$Name) {
    $info = Get-ScheduledTaskInfo -TaskPath $TaskFolder -TaskName $Name
    $code = [int64]$info.LastTaskResult
    if ($code -lt 0) { $code += 4294967296 }
    return $code
}

function Show-TaskState([string]$Name, [string]$LogFile) {
    $task = Get-AgentTask $Name
    if ("$($task.State)" -eq 'Running') {
        SayOk "Задача $TaskFolder$Name работает."
        return $true
    }
    $code = Get-TaskResultCode $Name
    $hex = '0x{0:X}' -f $code
    switch ($code) {
        267011 { SayError "Задача $TaskFolder$Name ещё ни разу не запускалась." }
        2 { SayError "Задача $TaskFolder$Name остановилась: программа нашла ошибку в настройках или в параметрах запуска (код 2)." }
        2147942402 { SayError "Задача $TaskFolder$Name не запустилась: Windows не нашла программу (код $hex)." }
        2147942667 { SayError "Задача $TaskFolder$Name не запустилась: Windows не нашла рабочую папку $ConfigDir (код $hex)." }
        default { SayError "Задача $TaskFolder$Name не работает: последний запуск закончился с кодом $code ($hex)." }
    }
    if (Test-Path -LiteralPath $LogFile -PathType Leaf) {
        Write-InstallLog "the last lines of $LogFile" @(Get-Content -LiteralPath $LogFile -Tail 15 -Encoding UTF8)
        Say "Подробности для администратора — в журнале $LogFile (последние строки есть и в журнале установки $($script:InstallLog))."
    }
    return $false
}

# --- The pusher's log: did the data reach the office ----------------------------------------------------

function Get-FileLength([string]$Path) {
    $file = New-Object System.IO.FileInfo($Path)
    if (-not $file.Exists) { return [int64]0 }
    return [int64]$file.Length
}

function Read-LogSince([string]$Path, [int64]$Offset) {
    # What the agent wrote after $Offset. The agent keeps the file open for writing, so it is opened
    # shared; a file shorter than $Offset was rotated, and is read from its start.
    if (-not (Test-Path -LiteralPath $Path -PathType Leaf)) { return '' }
    $share = [System.IO.FileShare]([System.IO.FileShare]::ReadWrite -bor [System.IO.FileShare]::Delete)
    $stream = New-Object System.IO.FileStream($Path, [System.IO.FileMode]::Open, [System.IO.FileAccess]::Read, $share)
    try {
        $start = $Offset
        if ($stream.Length -lt $start) { $start = 0 }
        [void]$stream.Seek($start, [System.IO.SeekOrigin]::Begin)
        $reader = New-Object System.IO.StreamReader($stream, $script:Utf8Encoding)
        return $reader.ReadToEnd()
    } finally {
        $stream.Dispose()
    }
}

function ConvertTo-PushReasonText([string]$Reason, [string]$Message) {
    # The pusher's reason word (pusher/transport.py, exporter/httpclient.py) in the technician's words.
    $code = ''
    if ($Message -match 'HTTP (\d{3})') { $code = $Matches[1] }
    $codeText = ''
    if ($code) { $codeText = " (код $code)" }
    switch ($Reason) {
        'dns' { return 'имя сервера офиса не нашлось: проверьте адрес в настройках (push: gateway:) и выход этого компьютера в интернет' }
        'refused' { return 'сервер офиса отказал в соединении: по этому адресу и порту данные не принимают; проверьте адрес в настройках (push: gateway:)' }
        'timeout' { return 'сервер офиса не ответил вовремя: нет связи с офисом; проверьте интернет на этом компьютере и адрес в настройках (push: gateway:)' }
        'connect' { return 'не удалось связаться с сервером офиса: проверьте интернет на этом компьютере и адрес в настройках (push: gateway:)' }
        'tls' { return 'сертификат сервера офиса не прошёл проверку; если администратор дал файл сертификата (ca.pem), он должен лежать рядом с настройками и быть указан в них' }
        'auth' {
            if ($code -eq '403') { return 'офис не принял данные этой точки (код 403): идентификатор точки в настройках не совпадает с тем, на который выдан пароль' }
            return "офис не принял логин или пароль точки$($codeText): сверьте логин (username) в настройках с выданным и файл пароля"
        }
        'rejected' { return "офис отклонил присланные данные$codeText" }
        'status' { return "сервер офиса ответил ошибкой$codeText" }
    }
    return 'причина записана в журнал'
}

function Show-PushProblem([string]$Problem, [string]$Where) {
    # $Problem as the pusher logs it: "reason: message", and "relay URL: error" for each page it could not read.
    if ($Problem -match '^relay ') {
        SayError 'Данные дошли до офиса, но без результатов проверок: sitewatch-pusher не смог прочитать страницу sitewatch-exporter на этом компьютере.'
    } elseif ($Problem -match '^(\w+): (.*)$') {
        SayError "Данные до офиса не дошли: $(ConvertTo-PushReasonText $Matches[1] $Matches[2])."
    } else {
        SayError 'Данные до офиса не дошли.'
    }
    Say "Подробности для администратора — в журнале $Where."
}

function Wait-FirstPush([string]$LogFile, [int64]$Offset, [datetime]$Deadline) {
    # The running pusher logs event=push_ok or event=push_problem after its first push (a few seconds
    # after the start; a failing push is retried for up to most of a minute first).
    Say 'Жду первой отправки данных в офис (до минуты)…'
    while ($true) {
        $text = Read-LogSince $LogFile $Offset
        foreach ($line in ($text -split "`r?`n")) {
            if ($line -match '\bevent=push_ok\b') {
                SayOk 'Данные дошли до офиса: sitewatch-pusher отправил первые результаты.'
                return $true
            }
            if ($line -match '\bevent=push_problem\b.*?\bproblem=(?:''(.*)''|"(.*)")\s*$') {
                $problem = $Matches[1]
                if (-not $problem) { $problem = $Matches[2] }
                Write-InstallLog "from $LogFile" @($line)
                Show-PushProblem $problem $LogFile
                return $false
            }
            if ($line -match '\bevent=stopped_by_error\b') {
                SayError 'sitewatch-pusher остановился, ничего не отправив: он нашёл ошибку в настройках или в параметрах запуска.'
                Say "Подробности для администратора — в журнале $LogFile."
                return $false
            }
        }
        if ((Get-Date) -ge $Deadline) { break }
        Start-Sleep -Seconds 1
    }
    SayError 'За минуту sitewatch-pusher так и не сообщил, дошли ли данные до офиса.'
    Say "Подробности для администратора — в журнале $LogFile."
    return $false
}

# --- The exporter's address and the firewall ---------------------------------------------------------

function Resolve-ExporterAddress {
    # A re-run without -ListenAddress or -WebConfigFile keeps what the exporter's task was given: a page
    # moved to another port, or left without its passwords, would be a surprise found out in the office.
    $previous = @(Get-TaskArguments $ExporterTask)
    if (-not $ListenAddress) {
        $keptAddress = Get-OptionValue $previous '--web.listen-address'
        if ($keptAddress) {
            $script:ListenAddress = $keptAddress
            if ($keptAddress -ne $DefaultListenAddress) {
                Say "Адрес страницы sitewatch-exporter остаётся прежним, как в его задаче: $keptAddress (другой адрес: -ListenAddress)."
            }
        } else {
            $script:ListenAddress = $DefaultListenAddress
        }
    }
    if ($script:Bound.ContainsKey('WebConfigFile')) { return }
    $keptFile = Get-OptionValue $previous '--web.config.file'
    if (-not $keptFile) { return }
    if (-not (Test-Path -LiteralPath $keptFile -PathType Leaf)) {
        Fail "Прежняя задача sitewatch-exporter закрывала страницу паролем или шифрованием по файлу $keptFile, а этого файла больше нет. Укажите файл ключом -WebConfigFile или, чтобы страница была без пароля, -WebConfigFile none."
    }
    $script:WebConfigFile = $keptFile
    Say "Файл с паролями и сертификатом для страницы sitewatch-exporter остаётся прежним, как в его задаче: $keptFile (другой: -WebConfigFile, без него: -WebConfigFile none)."
}

function Get-ListenPort {
    if ($ListenAddress -notmatch ':(\d{1,5})$' -or [int]$Matches[1] -lt 1 -or [int]$Matches[1] -gt 65535) {
        Fail "Адрес $ListenAddress не подходит: нужен порт в конце, например :9815 или 127.0.0.1:9815."
    }
    return [int]$Matches[1]
}

function Get-ListenHost {
    # '' for every IPv4 address of the computer (:9815 and 0.0.0.0:9815, as sitewatch-exporter reads them).
    $hostPart = $ListenAddress.Substring(0, $ListenAddress.LastIndexOf(':')).Trim('[', ']')
    if ($hostPart -eq '0.0.0.0') { return '' }
    return $hostPart
}

function Get-ProbeHost {
    # Where this computer itself reaches the page: [::] listens on IPv6 only, which ::1 reaches.
    $hostPart = Get-ListenHost
    if (-not $hostPart) { return '127.0.0.1' }
    if ($hostPart -eq '::') { return '::1' }
    return $hostPart
}

function Get-LocalPageUrl([int]$Port) {
    # The exporter's page as sitewatch-pusher reads it in Both mode.
    return "http://127.0.0.1:$Port/metrics"
}

function Assert-BothModeFits([int]$Port) {
    # In Both mode sitewatch-pusher reads the exporter's page as plain http from 127.0.0.1.
    $page = Get-LocalPageUrl $Port
    if ($WebConfigFile) {
        Fail "В режиме Both sitewatch-pusher забирает результаты со страницы sitewatch-exporter по адресу $page без пароля, а файл $WebConfigFile (-WebConfigFile) закрывает страницу паролем или шифрованием, и прочитать её sitewatch-pusher не сможет. Выберите режим Pusher или Exporter либо уберите файл: -WebConfigFile none."
    }
    if ((Get-ListenHost) -notin @('', '127.0.0.1', 'localhost')) {
        Fail "В режиме Both sitewatch-pusher читает страницу sitewatch-exporter по адресу 127.0.0.1, а страница на адресе $ListenAddress там не отвечает. Укажите -ListenAddress :$Port (все адреса компьютера) или -ListenAddress 127.0.0.1:$Port (только сам компьютер)."
    }
}

function Test-TcpPort([string]$HostName, [int]$Port) {
    $client = New-Object System.Net.Sockets.TcpClient
    try {
        $attempt = $client.BeginConnect($HostName, $Port, $null, $null)
        if (-not $attempt.AsyncWaitHandle.WaitOne(1000)) { return $false }
        $client.EndConnect($attempt)
        return $true
    } catch {
        return $false
    } finally {
        $client.Close()
    }
}

function Wait-ExporterPort([int]$Port) {
    $probeHost = Get-ProbeHost
    foreach ($attempt in 1..15) {
        if (Test-TcpPort $probeHost $Port) { return $true }
        Start-Sleep -Seconds 1
    }
    return $false
}

function Get-AllowedAddresses {
    # -AllowFrom 10.8.0.1,10.8.0.2 arrives as one string through powershell.exe -File.
    return @($AllowFrom | ForEach-Object { $_ -split ',' } | ForEach-Object { $_.Trim() } | Where-Object { $_ })
}

function Test-FirewallAddress([string]$Address) {
    # What New-NetFirewallRule -RemoteAddress takes: an address, a subnet (10.8.0.0/24 or with a mask),
    # a range (10.8.0.1-10.8.0.9) or a keyword.
    if ($Address -in @('LocalSubnet', 'LocalSubnet4', 'LocalSubnet6')) { return $true }
    $ends = @($Address.Split('-'))
    if ($ends.Count -eq 2) { return ((Test-IpAddress $ends[0]) -and (Test-IpAddress $ends[1])) }
    if ($ends.Count -ne 1) { return $false }
    $parts = @($Address.Split('/'))
    if ($parts.Count -gt 2 -or -not (Test-IpAddress $parts[0])) { return $false }
    if ($parts.Count -eq 1) { return $true }
    return ($parts[1] -match '^\d{1,3}$' -or (Test-IpAddress $parts[1]))
}

function Test-IpAddress([string]$Text) {
    # IPAddress.TryParse also takes "10" or "10.8" for an address; a firewall rule with that is a mistake.
    if ($Text -notmatch '^\d{1,3}(\.\d{1,3}){3}$' -and $Text -notmatch '^[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*$') { return $false }
    $parsed = $null
    return [System.Net.IPAddress]::TryParse($Text, [ref]$parsed)
}

function Test-ExporterRule([int]$Port) {
    # The rule an earlier install made for this port (its display name carries the port).
    $rule = Get-NetFirewallRule -Name $ExporterRuleName -ErrorAction SilentlyContinue
    return ($null -ne $rule -and "$($rule.DisplayName)" -eq "sitewatch-exporter (TCP $Port)")
}

function Select-FirewallAddresses([int]$Port) {
    # The addresses the exporter's port is to be opened for: -AllowFrom, or asked at the start, before
    # the long steps. None when a rule for the port is there already or the page is for this computer only.
    $given = @(Get-AllowedAddresses)
    if ($given.Count -gt 0) {
        $wrong = @($given | Where-Object { -not (Test-FirewallAddress $_) })
        if ($wrong.Count -gt 0) {
            Fail "В -AllowFrom не адрес: $(Join-RussianList $wrong). Нужен адрес офисного Prometheus (10.8.0.1), подсеть (10.8.0.0/24), диапазон (10.8.0.1-10.8.0.9) или LocalSubnet."
        }
        return $given
    }
    if ((Get-ListenHost) -in @('127.0.0.1', 'localhost', '::1')) { return @() }
    if (Test-ExporterRule $Port) {
        Say "Порт $Port уже открыт в брандмауэре для офисного Prometheus: правило остаётся как было."
        return @()
    }
    if (-not $script:Interactive) {
        if ($OpenFirewall) {
            Fail 'С ключом -OpenFirewall укажите, с каких адресов пускать к порту: -AllowFrom и адрес офисного Prometheus (или LocalSubnet).'
        }
        Show-ClosedPortWarning $Port
        return @()
    }
    while ($true) {
        $answer = (Ask 'С какого адреса офисный Prometheus будет опрашивать этот компьютер? Enter — не открывать порт').Trim()
        if (-not $answer) {
            Show-ClosedPortWarning $Port
            return @()
        }
        $list = @($answer -split '[,;\s]+' | Where-Object { $_ })
        $wrong = @($list | Where-Object { -not (Test-FirewallAddress $_) })
        if ($wrong.Count -eq 0) { return $list }
        SayWarn "Это не адрес: $(Join-RussianList $wrong). Введите адрес (10.8.0.1), подсеть (10.8.0.0/24), диапазон (10.8.0.1-10.8.0.9) или LocalSubnet; несколько — через запятую."
    }
}

function Show-ClosedPortWarning([int]$Port) {
    SayWarn "Порт $Port в брандмауэре Windows не открыт: пока он закрыт, офисный Prometheus не сможет опрашивать этот компьютер. Открыть порт для него: install.cmd -AllowFrom и адрес офисного Prometheus."
}

function Remove-FirewallRules([string[]]$Names) {
    foreach ($name in $Names) {
        Remove-NetFirewallRule -Name $name -ErrorAction SilentlyContinue
    }
}

function Remove-LegacyFirewallRules([string[]]$DisplayNames) {
    foreach ($displayName in $DisplayNames) {
        Get-NetFirewallRule -DisplayName $displayName -ErrorAction SilentlyContinue | Remove-NetFirewallRule
    }
}

function Open-ExporterPort([int]$Port, [string[]]$Addresses) {
    Remove-FirewallRules @($ExporterRuleName)
    Remove-LegacyFirewallRules @($LegacyRuleDisplayNames[0])
    try {
        New-NetFirewallRule -Name $ExporterRuleName -DisplayName "sitewatch-exporter (TCP $Port)" -Group $FirewallGroup `
            -Description 'Страница sitewatch-exporter для офисного Prometheus.' -Direction Inbound -Protocol TCP `
            -LocalPort $Port -RemoteAddress $Addresses -Action Allow -Profile Any | Out-Null
    } catch {
        Fail "Брандмауэр не принял правило для порта $Port с адресов $($Addresses -join ', '): $($_.Exception.Message)"
    }
    SayOk "Порт $Port открыт в брандмауэре для $(Join-RussianList $Addresses)."
}

function Open-PingReplies {
    Remove-FirewallRules @($IcmpRuleName)
    Remove-LegacyFirewallRules @($LegacyRuleDisplayNames[1])
    New-NetFirewallRule -Name $IcmpRuleName -DisplayName 'sitewatch: ответы на ping (ICMPv4)' -Group $FirewallGroup `
        -Description 'Ответы на ping для проверок sitewatch.' -Direction Inbound -Protocol ICMPv4 -IcmpType 0 `
        -Action Allow -Profile Any | Out-Null
    SayOk 'Входящие ответы на ping разрешены в брандмауэре.'
}

# --- Installing the program ---------------------------------------------------------------------------

function Install-Program($PythonInfo, [string]$WheelsDir) {
    $venv = Join-Path $InstallDir 'venv'
    $venvPython = Join-Path $venv 'Scripts\python.exe'
    if (Test-Path -LiteralPath $venvPython -PathType Leaf) {
        $current = Get-PythonInfo $venvPython
        if ($null -eq $current -or $current.BasePrefix -ne $PythonInfo.BasePrefix) {
            Say 'Прежнее окружение Python сделано другим Python или повреждено: создаю его заново.'
            Remove-Item -LiteralPath $venv -Recurse -Force
        }
    }
    if (-not (Test-Path -LiteralPath $venvPython -PathType Leaf)) {
        New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
        Say "Создаю окружение Python в $venv"
        $created = Invoke-Program -FilePath $PythonInfo.Path -ArgumentList @('-m', 'venv', $venv) -FromPython -TimeoutSeconds 300
        if ($created.ExitCode -ne 0) {
            Write-InstallLog "python -m venv: exit code $($created.ExitCode)" @($created.Output, $created.Errors)
            Show-InstallLogHint
            Fail "Не удалось создать окружение Python в $venv (код $($created.ExitCode))."
        }
    }

    $wheel = @(Get-ChildItem -LiteralPath $WheelsDir -Filter 'sitewatch-*.whl' -File | Sort-Object LastWriteTime -Descending)[0]
    $common = @('-m', 'pip', 'install', '--no-index', '--find-links', $WheelsDir, '--disable-pip-version-check',
        '--no-warn-script-location', '--no-cache-dir', '--no-input')
    # Upgrades in place: every package to what the bundle holds, then sitewatch itself again, since a
    # bundle built from the same version number would otherwise count as "already installed".
    $steps = @(
        @($common + @('--upgrade', '--upgrade-strategy', 'eager', 'sitewatch')),
        @($common + @('--force-reinstall', '--no-deps', $wheel.FullName))
    )
    Say "Устанавливаю sitewatch из $WheelsDir"
    foreach ($step in $steps) {
        $pip = Invoke-Program -FilePath $venvPython -ArgumentList $step -FromPython
        Write-InstallLog "pip $($step[3..($step.Count - 1)] -join ' '): exit code $($pip.ExitCode)" @($pip.Output, $pip.Errors)
        if ($pip.ExitCode -ne 0) {
            Show-InstallLogHint
            Fail "Не удалось установить sitewatch из папки $WheelsDir (pip, код $($pip.ExitCode))."
        }
    }
    $exporter = Join-Path $venv 'Scripts\sitewatch-exporter.exe'
    $version = Invoke-Program -FilePath $exporter -ArgumentList @('--version') -FromPython
    if ($version.ExitCode -ne 0) {
        Write-InstallLog "sitewatch-exporter --version: exit code $($version.ExitCode)" @($version.Output, $version.Errors)
        Show-InstallLogHint
        Fail "Программа $exporter не запускается после установки (код $($version.ExitCode))."
    }
    SayOk "Установлен sitewatch $(@($version.Output.Trim().Split(' '))[-1]) ($(Get-BitsLabel $PythonInfo.Bits) Python 3.$($PythonInfo.Minor))."
    return $venv
}

# --- Checking the config before anything is registered -----------------------------------------------

function Confirm-ConfigValid([string]$Exporter, [string]$ConfigFile) {
    # Returns how many sites the config has (0 if the program's line could not be read).
    while ($true) {
        $result = Invoke-Program -FilePath $Exporter -ArgumentList @('validate', '--config', $ConfigFile) -WorkingDirectory $ConfigDir -FromPython
        Write-InstallLog "sitewatch-exporter validate: exit code $($result.ExitCode)" @($result.Output, $result.Errors)
        if ($result.ExitCode -eq 0) {
            # "...: valid, 1 site(s), 3 check(s)"
            if ($result.Output -match 'valid, (\d+) site\(s\), (\d+) check\(s\)') {
                $sites = [int]$Matches[1]
                $checks = [int]$Matches[2]
                SayOk "Настройки в порядке: $(Get-CountText $sites 'точка' 'точки' 'точек'), $(Get-CountText $checks 'проверка' 'проверки' 'проверок')."
                return $sites
            }
            SayOk 'Настройки в порядке.'
            return 0
        }
        # The program names each mistake in English, with its line; the guide explains the usual ones.
        SayError "В настройках $ConfigFile есть ошибки, программа перечисляет их ниже, у каждой номер строки:"
        Show-ProgramOutput @($result.Errors, $result.Output)
        if ($result.ExitCode -eq 2 -and (Confirm-Choice 'Открыть site.yml в Блокноте и исправить?')) {
            Open-InNotepad $ConfigFile
            continue
        }
        Fail "Задачи не зарегистрированы. Исправьте $ConfigFile и запустите установку ещё раз."
    }
}

function Confirm-Problem([string]$Question) {
    # A failed check or push stops the install, unless -Force was given or the technician says to go on.
    if ($Force) {
        SayWarn 'Продолжаю, потому что указан ключ -Force.'
        return
    }
    if (Confirm-Choice $Question) { return }
    Fail 'Задачи не зарегистрированы. Устраните неполадку и запустите установку ещё раз. Если неполадка ожидаема (например, касса сейчас выключена), запустите установку с ключом -Force: задачи будут зарегистрированы и так.'
}

function Show-OncePushFailure([string]$Output) {
    # sitewatch-pusher --once prints "<site>: NOT pushed [after N attempts]: <reason>: <message>".
    $line = @($Output -split "`r?`n" | Where-Object { $_ -match 'NOT pushed' })
    if ($line.Count -gt 0 -and $line[0] -match 'NOT pushed(?: after \d+ attempts)?: (\w+): (.*)$') {
        SayWarn "Отправить результаты в офис не удалось: $(ConvertTo-PushReasonText $Matches[1] $Matches[2])."
    } else {
        SayWarn 'Отправить результаты в офис не удалось.'
    }
    Show-InstallLogHint
}

function Invoke-TrialRun([string]$Exporter, [string]$Pusher, [string]$ConfigFile) {
    SayStep 'Пробный прогон всех проверок (sitewatch-exporter check); он может занять несколько минут.'
    $check = Invoke-Program -FilePath $Exporter -ArgumentList @('check', '--lang', 'ru', '--config', $ConfigFile) -WorkingDirectory $ConfigDir -FromPython
    Show-ProgramOutput @($check.Output)
    if ($check.ExitCode -eq 0) {
        SayOk 'Все проверки прошли.'
    } elseif ($check.ExitCode -eq 1) {
        SayWarn 'Не все проверки прошли: строки с неполадками видны в таблице выше.'
        Confirm-Problem 'Всё равно зарегистрировать задачи?'
    } else {
        Write-InstallLog "sitewatch-exporter check: exit code $($check.ExitCode)" @($check.Errors)
        Show-InstallLogHint
        Fail "Пробный прогон закончился с ошибкой (код $($check.ExitCode)). Задачи не зарегистрированы."
    }

    if ($Mode -eq 'Exporter') { return }
    # In Both mode too the trial push runs the checks itself: the exporter it will relay is not running yet.
    SayStep 'Пробная отправка результатов в офис (sitewatch-pusher --once).'
    $push = Invoke-Program -FilePath $Pusher -ArgumentList @('--config', $ConfigFile, '--once') -WorkingDirectory $ConfigDir -FromPython
    Write-InstallLog "sitewatch-pusher --once: exit code $($push.ExitCode)" @($push.Output, $push.Errors)
    if ($push.ExitCode -eq 0) {
        SayOk 'Результаты дошли до офиса.'
    } elseif ($push.ExitCode -eq 1) {
        Show-OncePushFailure $push.Output
        Confirm-Problem 'Всё равно зарегистрировать задачи?'
    } else {
        Show-InstallLogHint
        Fail "sitewatch-pusher не принял настройки (код $($push.ExitCode)): проверьте раздел push в $ConfigFile. Задачи не зарегистрированы."
    }
}

# --- Install and uninstall ------------------------------------------------------------------------------

function Select-Mode([string]$Current) {
    # $Current: the mode the tasks of an earlier install show, the default on a re-run.
    if ($Mode) { return $Mode }
    if (-not $script:Interactive) {
        if ($Current) {
            Say "Режим не указан: агент остаётся в режиме $Current, в котором уже работает."
            return $Current
        }
        Fail 'Укажите режим: -Mode Pusher, -Mode Exporter или -Mode Both.'
    }
    $numbers = @{ 'Pusher' = '1'; 'Exporter' = '2'; 'Both' = '3' }
    $now = @{ 'Pusher' = ''; 'Exporter' = ''; 'Both' = '' }
    $default = 'Pusher'
    $prompt = 'Введите 1, 2 или 3 (просто Enter — 1)'
    if ($Current) {
        $default = $Current
        $now[$Current] = ' (так агент работает сейчас)'
        $prompt = "Введите 1, 2 или 3 (просто Enter — $($numbers[$Current]), как сейчас)"
    }
    SayStep 'Как агент будет работать на этом компьютере?'
    Say "  1 — офис не может сам подключиться к этому компьютеру: агент сам отправляет результаты в офис (sitewatch-pusher)$($now['Pusher'])"
    Say "  2 — офисный Prometheus сам опрашивает этот компьютер (sitewatch-exporter)$($now['Exporter'])"
    Say "  3 — и то и другое: проверки выполняет sitewatch-exporter, а sitewatch-pusher отправляет его результаты в офис$($now['Both'])"
    while ($true) {
        switch ((Ask $prompt).Trim()) {
            '' { return $default }
            '1' { return 'Pusher' }
            '2' { return 'Exporter' }
            '3' { return 'Both' }
        }
        SayWarn 'Нужна цифра 1, 2 или 3.'
    }
}

function Install-Agent {
    $bundle = $PSScriptRoot
    $wheels = Join-Path $bundle 'wheels'
    if (-not (Test-Path -LiteralPath $wheels -PathType Container)) {
        Fail "Рядом со скриптом нет папки wheels ($wheels). Распакуйте архив комплекта целиком (правой кнопкой мыши — «Извлечь все») и запустите install.cmd из распакованной папки."
    }
    # -WebConfigFile none: the page without a web config, whatever the previous task had.
    if ($WebConfigFile -eq 'none') { $script:WebConfigFile = '' }

    # Every question comes first, before the long steps: the mode, which settings, which addresses.
    $script:Mode = Select-Mode (Get-CurrentMode)
    $withExporter = $Mode -ne 'Pusher'
    $withPusher = $Mode -ne 'Exporter'
    $addresses = @()
    if ($withExporter) {
        Resolve-ExporterAddress
    } else {
        if (-not $ListenAddress) { $script:ListenAddress = $DefaultListenAddress }
        if ($OpenFirewall -or @(Get-AllowedAddresses).Count -gt 0) {
            SayWarn "Ключи -OpenFirewall и -AllowFrom нужны только для sitewatch-exporter; в режиме $Mode порт не открываю."
        }
    }
    $port = Get-ListenPort
    if ($WebConfigFile -and -not (Test-Path -LiteralPath (ConvertTo-FullPath $WebConfigFile) -PathType Leaf)) {
        Fail "Файл $WebConfigFile не найден."
    }
    if ($Mode -eq 'Both') { Assert-BothModeFits $port }
    if ($withExporter) { $addresses = @(Select-FirewallAddresses $port) }

    SayStep 'Подготовка комплекта'
    # install.cmd has taken the "from the internet" mark off already; this is for a direct start of the
    # script. Only the bundle's own files: the folder it was unpacked into may hold anything else.
    $bundleFiles = @(Get-ChildItem -LiteralPath $bundle -File)
    foreach ($folder in @($wheels, (Join-Path $bundle 'examples'))) {
        if (Test-Path -LiteralPath $folder -PathType Container) { $bundleFiles += @(Get-ChildItem -LiteralPath $folder -Recurse -File) }
    }
    $bundleFiles | Unblock-File -ErrorAction SilentlyContinue
    $support = Get-BundleSupport $wheels
    Say "Пакеты комплекта подходят для $(Get-SupportText $support)."

    SayStep 'Поиск Python'
    $pythonInfo = Find-Python $support
    SayOk "Выбран Python 3.$($pythonInfo.Minor), $(Get-BitsLabel $pythonInfo.Bits): $($pythonInfo.Path)"

    SayStep 'Настройки'
    $newSettings = Initialize-Config $bundle
    $configFile = Join-Path $ConfigDir 'site.yml'

    SayStep 'Установка программы'
    Remove-LegacyAgents
    # From here until the new tasks are registered the old agent is stopped; the finally block at the
    # bottom starts it again, with its old settings, however the script ends (an error, Ctrl+C).
    Suspend-AgentTasks
    $venv = Install-Program $pythonInfo $wheels
    $exporter = Join-Path $venv 'Scripts\sitewatch-exporter.exe'
    $pusher = Join-Path $venv 'Scripts\sitewatch-pusher.exe'

    SayStep 'Проверка настроек (sitewatch-exporter validate)'
    Install-NewConfig $newSettings
    $webConfig = ''
    if ($withExporter) { $webConfig = Install-WebConfig }
    Protect-ConfigFolder -Quiet
    Test-EnvironmentSecrets $configFile
    $siteCount = Confirm-ConfigValid $exporter $configFile
    if ($Mode -eq 'Both' -and $siteCount -gt 1) {
        Fail "В режиме Both sitewatch-pusher отправляет в офис результаты одной точки, а в настройках $configFile их $siteCount. Для нескольких точек выберите режим Pusher или Exporter."
    }
    Invoke-TrialRun $exporter $pusher $configFile

    SayStep 'Регистрация в планировщике заданий'
    $logs = Join-Path $ConfigDir 'logs'
    $pusherLog = Join-Path $logs "$PusherTask.log"
    $exporterLog = Join-Path $logs "$ExporterTask.log"
    if ($withExporter) {
        $arguments = @('run', '--config', $configFile, '--web.listen-address', $ListenAddress, '--log.file', $exporterLog)
        if ($webConfig) { $arguments += @('--web.config.file', $webConfig) }
        Register-AgentTask $ExporterTask $exporter $arguments 'Агент sitewatch: проверки точки и страница метрик для Prometheus.'
    } elseif (Remove-AgentTask $ExporterTask) {
        Say "Задача $TaskFolder$ExporterTask удалена: в режиме $Mode она не нужна."
        Remove-FirewallRules @($ExporterRuleName)
    }
    if ($withPusher) {
        $pusherArguments = @('--config', $configFile, '--log.file', $pusherLog)
        $pusherDescription = 'Агент sitewatch: проверки точки и отправка результатов в офис.'
        if ($withExporter) {
            # Both: the exporter runs every check; the pusher only carries its page to the office, with the
            # config's push settings and site labels. Two programs running the checks would open a
            # register's port twice and push every series twice.
            $pusherArguments += @('--no-checks', '--from', (Get-LocalPageUrl $port))
            $pusherDescription = 'Агент sitewatch: отправка в офис результатов sitewatch-exporter этого компьютера.'
        }
        Register-AgentTask $PusherTask $pusher $pusherArguments $pusherDescription
    } elseif (Remove-AgentTask $PusherTask) {
        Say "Задача $TaskFolder$PusherTask удалена: в режиме $Mode она не нужна."
    }
    # The new tasks run on the new settings: nothing to give back from here on, whatever happens.
    $script:SuspendedTasks = @()
    $script:ConfigChanges = @()
    $script:NewTasksRegistered = $true

    # The exporter first: in Both mode the pusher's first push reads its page.
    $listening = $false
    if ($withExporter) {
        Start-AgentTask $ExporterTask
        $listening = Wait-ExporterPort $port
    }
    $pushLogOffset = [int64]0
    $pushDeadline = Get-Date
    if ($withPusher) {
        $pushLogOffset = Get-FileLength $pusherLog
        $pushDeadline = (Get-Date).AddSeconds(60)
        Start-AgentTask $PusherTask
    }

    if ($withExporter -and $addresses.Count -gt 0) { Open-ExporterPort $port $addresses }
    if ($AllowIcmpReplies) { Open-PingReplies }

    if ($PSScriptRoot -ne $InstallDir) {
        # So the agent can be removed, and this help read, without the bundle.
        foreach ($name in @('install.ps1', 'uninstall.cmd')) {
            $file = Join-Path $PSScriptRoot $name
            if (Test-Path -LiteralPath $file -PathType Leaf) { Copy-Item -LiteralPath $file -Destination $InstallDir -Force }
        }
    }

    SayStep 'Состояние агента'
    Say 'Жду 5 секунд, пока агент запустится…'
    Start-Sleep -Seconds 5
    $healthy = $true
    if ($withExporter) {
        if (-not (Show-TaskState $ExporterTask $exporterLog)) {
            $healthy = $false
        } elseif ($listening -or (Wait-ExporterPort $port)) {
            SayOk "sitewatch-exporter принимает соединения на порту $port."
        } else {
            SayError "sitewatch-exporter работает, но порт $port не отвечает. Подробности для администратора — в журнале $exporterLog."
            $healthy = $false
        }
    }
    if ($withPusher) {
        if (-not (Show-TaskState $PusherTask $pusherLog)) {
            $healthy = $false
        } elseif (-not (Wait-FirstPush $pusherLog $pushLogOffset $pushDeadline)) {
            $healthy = $false
        }
    }

    SayStep 'Готово'
    if ($withExporter) {
        $scheme = 'http'
        if ($webConfig -and (Get-Content -LiteralPath $webConfig -Encoding UTF8 | Where-Object { $_ -match '^\s*tls_server_config\s*:' })) { $scheme = 'https' }
        $pageHost = Get-ListenHost
        if (-not $pageHost) {
            Say "Страница состояния: $($scheme)://127.0.0.1:$port/ (с других компьютеров: $($scheme)://$($env:COMPUTERNAME):$port/)"
        } else {
            if ($pageHost -eq '::') { $pageHost = '::1' }
            if ($pageHost.Contains(':')) { $pageHost = "[$pageHost]" }
            Say "Страница состояния: $($scheme)://$($pageHost):$port/"
        }
    }
    Say "Журналы агента: $logs; журнал установки: $($script:InstallLog)"
    if ($newSettings) {
        Say "В силе новые настройки: $configFile."
    } else {
        Say "В силе настройки $configFile, которые уже были на этом компьютере."
    }
    Say 'Открывайте этот файл Блокнотом, запущенным от имени администратора: остальным папка закрыта.'
    Say 'После правки настроек запустите install.cmd ещё раз: он проверит их и перезапустит агент.'
    Say 'Задачи видны в планировщике заданий (taskschd.msc, папка sitewatch). Если агент остановится, планировщик запустит его снова в течение минуты; чтобы остановить агент надолго, отключите задачу там.'
    Say "Удалить агент: uninstall.cmd в папке $InstallDir"
    if (-not $healthy) {
        $script:ExitCode = 1
        SayError 'Агент установлен, но работает не всё: см. сообщения выше.'
    }
}

function Find-InstalledFolders {
    # Without -InstallDir and -ConfigDir, uninstall removes what the tasks show: the program they start
    # (<install folder>\venv\Scripts\...) and the folder they work in. uninstall.cmd run from the install
    # folder has set the install folder already.
    foreach ($name in @($PusherTask, $ExporterTask)) {
        $action = Get-TaskAction $name
        if ($null -eq $action) { continue }
        if (-not $script:Bound.ContainsKey('ConfigDir') -and $action.WorkingDirectory) {
            $script:ConfigDir = [string]$action.WorkingDirectory
        }
        $program = ([string]$action.Execute).Trim('"')
        if (-not $script:Bound.ContainsKey('InstallDir') -and -not $RunFromInstallDir -and $program -match '^(.+)\\venv\\Scripts\\[^\\]+$') {
            $script:InstallDir = $Matches[1]
        }
        return
    }
}

function Uninstall-Agent {
    # The window's folder may be the one being removed (uninstall.cmd in the install folder).
    Set-Location -LiteralPath $env:SystemRoot
    SayStep 'Удаление агента sitewatch'
    Find-InstalledFolders
    foreach ($name in @($PusherTask, $ExporterTask)) {
        if (Remove-AgentTask $name) { Say "Задача $TaskFolder$name остановлена и удалена." }
    }
    Remove-TaskFolder
    Remove-LegacyAgents
    Stop-AgentProcesses
    Remove-FirewallRules @($ExporterRuleName, $IcmpRuleName)
    Remove-LegacyFirewallRules $LegacyRuleDisplayNames
    Say 'Правила брандмауэра sitewatch удалены.'

    foreach ($folder in @($InstallDir, $ConfigDir)) {
        if ($folder -eq $ConfigDir -and -not $Purge) { continue }
        if (-not (Test-Path -LiteralPath $folder)) { continue }
        # Only a folder whose name says it is sitewatch's: a mistyped -InstallDir C:\ must not empty a disk.
        if ((Split-Path -Leaf $folder) -notmatch 'sitewatch') {
            SayWarn "Папку $folder не удаляю: по имени не видно, что это папка sitewatch. Удалите её сами, если она больше не нужна."
            continue
        }
        try {
            Remove-Item -LiteralPath $folder -Recurse -Force
        } catch {
            Fail "Не удалось удалить папку ${folder}: $($_.Exception.Message) Закройте окна и программы, открытые в этой папке, и запустите удаление ещё раз."
        }
        Say "Папка $folder удалена."
    }
    if (-not $Purge -and (Test-Path -LiteralPath $ConfigDir)) {
        Say "Настройки и журналы остались в $ConfigDir. Удалить и их: uninstall.cmd -Purge"
    }
    SayOk 'Агент sitewatch удалён.'
}

# --- Main -----------------------------------------------------------------------------------------------

try {
    Initialize-Session
    if (-not (Test-Administrator)) {
        Restart-Elevated
    } else {
        Assert-WindowsVersion
        # Only the elevated run holds it: the window that asked for rights waits for this one.
        Enter-SingleRun
        if ($Uninstall) {
            Uninstall-Agent
        } else {
            Install-Agent
        }
    }
} catch {
    $script:ExitCode = 1
    if ($script:StopMessage) {
        SayError $script:StopMessage
    } else {
        SayError 'Работа прервана непредвиденной ошибкой:'
        $position = ''
        if ($_.InvocationInfo) { $position = $_.InvocationInfo.PositionMessage }
        Show-ProgramOutput @($_.Exception.Message, $position)
    }
} finally {
    # Also after Ctrl+C, which skips the catch block: unless the new tasks took over, the old settings
    # come back and the old tasks run again, so the computer is left as it was found.
    if (-not $script:NewTasksRegistered) {
        try { Restore-PreviousConfig } catch { SayError "Не удалось вернуть прежние настройки: $($_.Exception.Message)" }
        Resume-SuspendedTasks
    }
    Exit-SingleRun
    Restore-Session
    if ($PauseAtEnd -and $script:Interactive) { [void](Ask 'Нажмите Enter, чтобы закрыть окно') }
}
exit $script:ExitCode
