<#
.SYNOPSIS
    Устанавливает агент sitewatch на компьютер площадки из офлайн-комплекта и ставит его на автозапуск
    через планировщик заданий Windows. С ключом -Uninstall удаляет агент.

.DESCRIPTION
    Скрипт лежит в корне распакованного комплекта, рядом с папками wheels и examples, и ставит агент
    оттуда, без интернета. По порядку он:
      1. проверяет права администратора; если их нет, перезапускает себя с запросом прав;
      2. снимает с файлов комплекта отметку «скачано из интернета»;
      3. находит Python, для которого в комплекте есть пакеты (сначала через py.exe, затем в обычных папках);
      4. кладёт настройки в C:\ProgramData\sitewatch\site.yml: готовый файл из -Config, site.yml,
         лежащий рядом с install.cmd, или пример, который открывает в Блокноте; закрывает эту папку для
         всех, кроме SYSTEM и администраторов, потому что в настройках бывают пароли;
      5. создаёт окружение Python в C:\Program Files\sitewatch\venv и ставит в него sitewatch из папки
         wheels; при повторном запуске обновляет его;
      6. проверяет настройки (sitewatch-exporter validate) и один раз прогоняет все проверки
         (sitewatch-exporter check); в режимах Pusher и Both ещё и один раз отправляет результаты в офис;
      7. регистрирует задачи \sitewatch\sitewatch-pusher и (или) \sitewatch\sitewatch-exporter:
         запуск при включении компьютера от имени SYSTEM, перезапуск после сбоя (планировщик проверяет
         задачу раз в минуту), без ограничения времени работы, в том числе от батареи; журнал пишется
         в C:\ProgramData\sitewatch\logs; запускает задачи и сообщает, работают ли они.

    Повторный запуск безопасен: он обновляет программу из нового комплекта, заново проверяет настройки
    и перезапускает агент. Так же применяются изменения в site.yml.

    Обычно скрипт запускают через install.cmd (двойным щелчком или из командной строки). Если запускать
    сам install.ps1 и PowerShell отвечает, что выполнение сценариев отключено, сначала введите в том же
    окне PowerShell:
        Set-ExecutionPolicy -Scope Process Bypass
    Это разрешает сценарии только в этом окне и только до его закрытия.

.PARAMETER Mode
    Как агент работает на этой площадке:
      Pusher   — офис не может сам подключиться к этому компьютеру: агент (sitewatch-pusher) прогоняет
                 проверки и сам отправляет результаты в офис;
      Exporter — офисный Prometheus сам опрашивает этот компьютер: агент (sitewatch-exporter) отдаёт
                 результаты на порту 9815;
      Both     — оба сразу.
    Если режим не указан, скрипт спросит его (просто Enter — Pusher).

.PARAMETER Config
    Готовый файл настроек площадки (site.yml). Он копируется в папку настроек (прежний сохраняется
    рядом как site.yml.bak) вместе с файлами, которые он называет относительным путём: файлом пароля
    ({file: ...}), ca_file, key_file и другими *_file. Если -Config не указан, при первой установке
    берётся site.yml, лежащий рядом с install.cmd, а если нет и его, скрипт кладёт в папку настроек
    пример и открывает его в Блокноте. При повторной установке без -Config остаются настройки,
    которые уже есть на компьютере.

.PARAMETER InstallDir
    Куда установить программу. По умолчанию C:\Program Files\sitewatch.

.PARAMETER ConfigDir
    Папка настроек и журналов; в ней задачи и работают. По умолчанию C:\ProgramData\sitewatch.

.PARAMETER ListenAddress
    Адрес и порт страницы экспортёра (режимы Exporter и Both). По умолчанию :9815, то есть все
    адреса компьютера; 127.0.0.1:9815 — только сам компьютер.

.PARAMETER WebConfigFile
    Файл с настройками TLS и паролей для страницы экспортёра (передаётся как --web.config.file).
    Лучше держать его в папке настроек.

.PARAMETER OpenFirewall
    Открыть порт экспортёра в брандмауэре Windows для адресов из -AllowFrom.

.PARAMETER AllowFrom
    С каких адресов пускать к порту экспортёра: адрес офисного Prometheus, подсеть (10.8.0.0/24),
    диапазон (10.8.0.1-10.8.0.9) или слово LocalSubnet; несколько — через запятую. Если указан
    -AllowFrom, ключ -OpenFirewall можно не писать.

.PARAMETER AllowIcmpReplies
    Разрешить в брандмауэре входящие ответы на ping (ICMPv4, тип 0). Нужно, если проверки ping
    дают timeout, хотя ping.exe ответы получает.

.PARAMETER Python
    Путь к python.exe, которым создать окружение, если скрипт сам не нашёл подходящий Python.

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
    Площадка, к которой офис подключиться не может: агент сам отправляет результаты, настройки готовы заранее.

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
    [string]$ListenAddress = ':9815',
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
$RecommendedPythonMinor = 12

if (-not $InstallDir) {
    # A 32-bit PowerShell on a 64-bit Windows sees "Program Files (x86)" as ProgramFiles.
    $programFiles = $env:ProgramW6432
    if (-not $programFiles) { $programFiles = $env:ProgramFiles }
    $InstallDir = Join-Path $programFiles 'sitewatch'
}
if (-not $ConfigDir) { $ConfigDir = Join-Path $env:ProgramData 'sitewatch' }

$script:Bound = @{}
foreach ($parameterName in $PSBoundParameters.Keys) { $script:Bound[$parameterName] = $PSBoundParameters[$parameterName] }
$script:ExitCode = 0
$script:StopMessage = $null
$script:SuspendedTasks = @()
$script:Utf8Encoding = New-Object System.Text.UTF8Encoding($false)
$script:ConsoleEncoding = [System.Text.Encoding]::Default
$script:SavedEnvironment = @{}
$script:Interactive = $true

# --- What the technician reads ----------------------------------------------------------------------
# Every line the script itself shows goes through these functions (and Ask/Confirm-Choice for questions),
# so tests/test_windows_install_script.py can find each text and check that it is Russian. What the
# programs print (the check table, pip's errors) is shown by Show-ProgramOutput, indented, as it came.

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
    $answer = (Ask "$Text Введите д (да) или н (нет)").Trim().ToLowerInvariant()
    # "l" is the key of "д" in the Latin layout.
    return ($answer -in @('д', 'да', 'y', 'yes', 'l'))
}

function Show-ProgramOutput([string[]]$Lines) {
    foreach ($block in $Lines) {
        if ($null -eq $block) { continue }
        foreach ($line in ($block -split "`r?`n")) {
            if ($line.Trim()) { Write-Host ('    ' + $line) }
        }
    }
}

function Join-RussianList([string[]]$Items) {
    # "3.10, 3.11 и 3.12"
    $list = @($Items)
    if ($list.Count -le 1) { return ($list -join '') }
    return (($list[0..($list.Count - 2)] -join ', ') + ' и ' + $list[$list.Count - 1])
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
    try {
        $process = [System.Diagnostics.Process]::Start($info)
        $standardOutput = $process.StandardOutput.ReadToEndAsync()
        $standardError = $process.StandardError.ReadToEndAsync()
        if (-not $process.WaitForExit($TimeoutSeconds * 1000)) {
            try { $process.Kill() } catch { }
            Fail "Программа $FilePath работала дольше $TimeoutSeconds с и была остановлена."
        }
        $process.WaitForExit()
        return [pscustomobject]@{
            ExitCode = $process.ExitCode
            Output   = [string]$standardOutput.Result
            Errors   = [string]$standardError.Result
        }
    } finally {
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

# --- Start: console, rights -------------------------------------------------------------------------

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

function Test-Administrator {
    $identity = [Security.Principal.WindowsIdentity]::GetCurrent()
    $principal = New-Object Security.Principal.WindowsPrincipal($identity)
    return $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
}

function Assert-WindowsVersion {
    $hasTasks = Get-Command -Name 'Register-ScheduledTask' -ErrorAction SilentlyContinue
    if ($PSVersionTable.PSVersion.Major -lt 5 -or -not $hasTasks) {
        Fail 'Этот компьютер не подходит: нужна Windows 10 или 11 (или серверная Windows 2016 и новее) с Windows PowerShell 5.1.'
    }
}

function Restart-Elevated {
    # Paths given relative to this window's folder are made absolute first: the new window starts elsewhere.
    foreach ($name in @('Config', 'InstallDir', 'ConfigDir', 'WebConfigFile', 'Python')) {
        if ($script:Bound.ContainsKey($name) -and $script:Bound[$name]) {
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

function Get-SupportText($Support) {
    $lines = @()
    foreach ($bits in @(64, 32)) {
        $versions = @($Support | Where-Object { $_.Bits -eq $bits } | Sort-Object Minor | ForEach-Object { "3.$($_.Minor)" })
        if ($versions.Count -gt 0) { $lines += "$(Get-BitsLabel $bits) $(Join-RussianList $versions)" }
    }
    return ($lines -join '; ')
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

function Find-Python($Support) {
    $explicit = [bool]$Python
    if ($explicit) {
        $candidates = @(ConvertTo-FullPath $Python)
    } else {
        $candidates = @(Get-PythonCandidates)
    }
    $seen = @{}
    $usable = @()
    $rejected = @()
    foreach ($candidate in $candidates) {
        if (-not $candidate -or -not (Test-Path -LiteralPath $candidate -PathType Leaf)) { continue }
        $info = Get-PythonInfo $candidate
        if ($null -eq $info) {
            if ($explicit) { $rejected += "$candidate — не запускается, или в нём нет модулей venv и ensurepip" }
            continue
        }
        $key = $info.Path.ToLowerInvariant()
        if ($seen.ContainsKey($key)) { continue }
        $seen[$key] = $true
        $label = "$($info.Path) — Python 3.$($info.Minor), $(Get-BitsLabel $info.Bits)"
        $fits = @($Support | Where-Object { $_.Minor -eq $info.Minor -and $_.Bits -eq $info.Bits }).Count -gt 0
        if (-not $fits) {
            $rejected += "${label}: для такого Python в комплекте нет пакетов"
        } elseif ($info.IsVenv) {
            $rejected += "${label}: это окружение другой программы, а не сам Python"
        } elseif ($info.FromStore) {
            $rejected += "${label}: установлен из Microsoft Store, задачи от имени SYSTEM его не увидят"
        } elseif ($info.PerUser -and -not $explicit) {
            $rejected += "${label}: установлен только для одного пользователя"
        } else {
            $usable += $info
        }
    }
    if (@($usable).Count -gt 0) {
        $preferBits = 32
        if ([Environment]::Is64BitOperatingSystem) { $preferBits = 64 }
        $chosen = @($usable | Sort-Object -Property @{ Expression = { $_.Minor }; Descending = $true }, @{ Expression = { [int]($_.Bits -eq $preferBits) }; Descending = $true })[0]
        if ($chosen.PerUser) {
            SayWarn 'Этот Python установлен только для одного пользователя. Агент перестанет работать, если удалить его учётную запись.'
        }
        return $chosen
    }

    SayError 'Не найден Python, на который можно поставить агент.'
    if (@($rejected).Count -gt 0) {
        Say 'Найдены, но не подходят:'
        foreach ($line in $rejected) { Say "  $line" }
    }
    Say "Пакеты комплекта подходят к такому Python: $(Get-SupportText $Support)."
    $minor = $RecommendedPythonMinor
    if (@($Support | Where-Object { $_.Minor -eq $minor }).Count -eq 0) {
        $minor = @($Support | Sort-Object Minor -Descending)[0].Minor
    }
    $bits = 64
    if (-not [Environment]::Is64BitOperatingSystem) { $bits = 32 }
    Say 'Что сделать:'
    Say "  1. Скачайте с https://www.python.org/downloads/windows/ установщик Python 3.$minor, $(Get-BitsLabel $bits) (на странице он называется «Windows installer ($bits-bit)»)."
    Say "  2. Запустите его, нажмите «Customize installation», затем «Next», на следующем экране отметьте «Install Python 3.$minor for all users» и нажмите «Install»."
    Say '  3. Ставьте именно для всех пользователей: Python, установленный только для себя, лежит в профиле того, кто его ставил, и агент перестанет работать, как только эту учётную запись удалят.'
    Say '  4. Запустите install.cmd ещё раз.'
    Fail 'Установка остановлена: нужен Python.'
}

# --- Config -------------------------------------------------------------------------------------------

function Open-InNotepad([string]$File) {
    Say "Открываю $File в Блокноте. Впишите настройки этой площадки, сохраните файл и закройте Блокнот."
    Start-Process -FilePath 'notepad.exe' -ArgumentList (ConvertTo-CommandLineArgument $File) | Out-Null
    # Not Start-Process -Wait: on Windows 11 notepad.exe may hand the file to the new Notepad and exit at once.
    [void](Ask 'Когда сохраните файл, нажмите Enter')
}

function Get-ExampleConfig([string]$BundleDir) {
    # The bundle ships pusher-site.yml (a site behind NAT) and pos-site.yml (an exporter on a till PC).
    $examples = Join-Path $BundleDir 'examples'
    $names = @('pusher-site.yml', 'pos-site.yml')
    if ($Mode -eq 'Exporter') { $names = @('pos-site.yml', 'pusher-site.yml') }
    foreach ($name in $names) {
        $path = Join-Path $examples $name
        if (Test-Path -LiteralPath $path -PathType Leaf) { return $path }
    }
    return $null
}

function Copy-ReferencedFiles([string]$SourceFile) {
    # Files that site.yml names by a relative path ({file: shop-101.password}, ca_file: ca.pem,
    # key_file: key, hours_file:, targets_file:) are read from its folder, so they go where it goes.
    # Plain Get-Content: it recognises a byte order mark, and the names are Latin anyway.
    $sourceFolder = Split-Path -Parent $SourceFile
    $names = @()
    foreach ($line in @(Get-Content -LiteralPath $SourceFile)) {
        $code = ($line -split '#', 2)[0]
        foreach ($match in [regex]::Matches($code, '\{\s*file\s*:\s*([^}]+?)\s*\}')) { $names += $match.Groups[1].Value }
        if ($code -match '^\s*(?:-\s+)?\w+_file\s*:\s*(\S.*?)\s*$') { $names += $Matches[1] }
    }
    foreach ($name in $names) {
        $relative = $name.Trim().Trim('"', "'")
        if (-not $relative -or [IO.Path]::IsPathRooted($relative) -or $relative.Contains('..')) { continue }
        $from = Join-Path $sourceFolder $relative
        # A file that is not there is named by the check of the settings further on.
        if (-not (Test-Path -LiteralPath $from -PathType Leaf)) { continue }
        $to = Join-Path $ConfigDir $relative
        New-Item -ItemType Directory -Force -Path (Split-Path -Parent $to) | Out-Null
        Copy-Item -LiteralPath $from -Destination $to -Force
        Say "Вместе с настройками скопирован файл $relative"
    }
}

function Initialize-Config([string]$BundleDir) {
    $target = Join-Path $ConfigDir 'site.yml'
    New-Item -ItemType Directory -Force -Path $ConfigDir | Out-Null
    New-Item -ItemType Directory -Force -Path (Join-Path $ConfigDir 'logs') | Out-Null
    # A site.yml beside install.cmd is taken on the first install (the guide says to put it there);
    # later the one on this computer wins, since it may have been edited since.
    $source = $null
    $beside = Join-Path $BundleDir 'site.yml'
    if ($Config) {
        $source = ConvertTo-FullPath $Config
        if (-not (Test-Path -LiteralPath $source -PathType Leaf)) { Fail "Файл настроек $source не найден." }
    } elseif (Test-Path -LiteralPath $beside -PathType Leaf) {
        if (-not (Test-Path -LiteralPath $target -PathType Leaf)) {
            $source = $beside
        } elseif ([IO.File]::ReadAllText($beside) -cne [IO.File]::ReadAllText($target)) {
            SayWarn "Рядом с install.cmd лежит site.yml, но на этом компьютере уже есть настройки $target, и они другие. Оставляю те, что на компьютере; заменить их: install.cmd -Config site.yml"
        }
    }
    if ($source) {
        if ($source -ne $target) {
            if (Test-Path -LiteralPath $target -PathType Leaf) {
                Copy-Item -LiteralPath $target -Destination "$target.bak" -Force
                Say "Прежние настройки сохранены в $target.bak"
            }
            Copy-Item -LiteralPath $source -Destination $target -Force
            Copy-ReferencedFiles $source
        }
        Say "Настройки: $target (скопированы из $source)"
    } elseif (Test-Path -LiteralPath $target -PathType Leaf) {
        Say "Настройки: $target (уже были на этом компьютере)"
    } else {
        if (-not $script:Interactive) {
            Fail "Файла настроек $target ещё нет. Укажите готовый файл: -Config путь\site.yml"
        }
        $example = Get-ExampleConfig $BundleDir
        if (-not $example) { Fail "Файла настроек $target ещё нет, а в комплекте нет примера. Укажите готовый файл: -Config путь\site.yml" }
        Copy-Item -LiteralPath $example -Destination $target
        Say "Настроек на этом компьютере ещё нет: в $target скопирован пример $(Split-Path -Leaf $example)."
        Open-InNotepad $target
    }
    return $target
}

function Protect-ConfigFolder {
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
    Say "Папка $ConfigDir открыта только для SYSTEM и администраторов: в настройках бывают пароли."
}

function Test-EnvironmentSecrets([string]$ConfigFile) {
    $lines = @(Get-Content -LiteralPath $ConfigFile -Encoding UTF8 | Where-Object { $_ -match '^[^#]*\{\s*env\s*:' })
    if ($lines.Count -gt 0) {
        SayWarn 'В site.yml есть значения вида {env: ИМЯ}. Задачи работают от имени SYSTEM, и переменных окружения этого окна у них не будет.'
        SayWarn "Такие пароли запишите как enc: (команда sitewatch-exporter encrypt) или как {file: имя-файла} с файлом в папке $ConfigDir."
    }
}

# --- Tasks, processes, the old ways of running -------------------------------------------------------

function Get-AgentTask([string]$Name, [string]$Folder = $TaskFolder) {
    return (Get-ScheduledTask -TaskPath $Folder -TaskName $Name -ErrorAction SilentlyContinue)
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
    # Disabled first, so the watchdog trigger does not start the agent again while pip replaces its files.
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
    foreach ($name in @($script:SuspendedTasks)) {
        try {
            Enable-ScheduledTask -TaskPath $TaskFolder -TaskName $name | Out-Null
            Start-ScheduledTask -TaskPath $TaskFolder -TaskName $name
            SayWarn "Прежняя задача $name снова включена и запущена."
        } catch {
            SayError "Не удалось снова включить задачу ${name}: $($_.Exception.Message)"
        }
    }
    $script:SuspendedTasks = @()
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
    $action = New-ScheduledTaskAction -Execute $Executable -Argument (Join-CommandLine $ArgumentList) -WorkingDirectory $ConfigDir
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
        Say "Последние строки журнала ${LogFile}:"
        Show-ProgramOutput @(Get-Content -LiteralPath $LogFile -Tail 15 -Encoding UTF8)
    }
    return $false
}

# --- The exporter's address and the firewall ---------------------------------------------------------

function Get-ListenPort {
    if ($ListenAddress -notmatch ':(\d{1,5})$' -or [int]$Matches[1] -lt 1 -or [int]$Matches[1] -gt 65535) {
        Fail "Адрес $ListenAddress не подходит: нужен порт в конце, например :9815 или 127.0.0.1:9815."
    }
    return [int]$Matches[1]
}

function Get-ListenHost {
    $hostPart = $ListenAddress.Substring(0, $ListenAddress.LastIndexOf(':')).Trim('[', ']')
    if ($hostPart -in @('', '0.0.0.0', '::')) { return '' }
    return $hostPart
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

function Get-AllowedAddresses {
    # -AllowFrom 10.8.0.1,10.8.0.2 arrives as one string through powershell.exe -File.
    return @($AllowFrom | ForEach-Object { $_ -split ',' } | ForEach-Object { $_.Trim() } | Where-Object { $_ })
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
            Show-ProgramOutput @($created.Output, $created.Errors)
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
        if ($pip.ExitCode -ne 0) {
            $lastLines = (@($pip.Output -split "`r?`n") | Select-Object -Last 20) -join "`n"
            Show-ProgramOutput @($lastLines, $pip.Errors)
            Fail "Не удалось установить sitewatch из папки $WheelsDir (pip, код $($pip.ExitCode))."
        }
    }
    $exporter = Join-Path $venv 'Scripts\sitewatch-exporter.exe'
    $version = Invoke-Program -FilePath $exporter -ArgumentList @('--version') -FromPython
    if ($version.ExitCode -ne 0) {
        Show-ProgramOutput @($version.Output, $version.Errors)
        Fail "Программа $exporter не запускается после установки (код $($version.ExitCode))."
    }
    SayOk "Установлен sitewatch $(@($version.Output.Trim().Split(' '))[-1]) ($(Get-BitsLabel $PythonInfo.Bits) Python 3.$($PythonInfo.Minor))."
    return $venv
}

# --- Checking the config before anything is registered -----------------------------------------------

function Confirm-ConfigValid([string]$Exporter, [string]$ConfigFile) {
    while ($true) {
        $result = Invoke-Program -FilePath $Exporter -ArgumentList @('validate', '--config', $ConfigFile) -WorkingDirectory $ConfigDir -FromPython
        if ($result.ExitCode -eq 0) {
            SayOk 'Настройки без ошибок.'
            Show-ProgramOutput @($result.Output)
            return
        }
        SayError "В настройках $ConfigFile есть ошибки:"
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
        Show-ProgramOutput @($check.Errors)
        Fail "Пробный прогон закончился с ошибкой (код $($check.ExitCode)). Задачи не зарегистрированы."
    }

    if ($Mode -eq 'Exporter') { return }
    SayStep 'Пробная отправка результатов в офис (sitewatch-pusher --once).'
    $push = Invoke-Program -FilePath $Pusher -ArgumentList @('--config', $ConfigFile, '--once') -WorkingDirectory $ConfigDir -FromPython
    Show-ProgramOutput @($push.Output)
    if ($push.ExitCode -eq 0) {
        SayOk 'Результаты дошли до офиса.'
    } elseif ($push.ExitCode -eq 1) {
        SayWarn 'Отправить результаты в офис не удалось: причина написана в строке выше.'
        Confirm-Problem 'Всё равно зарегистрировать задачи?'
    } else {
        Show-ProgramOutput @($push.Errors)
        Fail "sitewatch-pusher не принял настройки (код $($push.ExitCode)): проверьте раздел push в $ConfigFile. Задачи не зарегистрированы."
    }
}

# --- Install and uninstall ------------------------------------------------------------------------------

function Select-Mode {
    if ($Mode) { return $Mode }
    if (-not $script:Interactive) { Fail 'Укажите режим: -Mode Pusher, -Mode Exporter или -Mode Both.' }
    SayStep 'Как агент будет работать на этом компьютере?'
    Say '  1 — офис не может сам подключиться к этому компьютеру: агент сам отправляет результаты в офис (sitewatch-pusher)'
    Say '  2 — офисный Prometheus сам опрашивает этот компьютер (sitewatch-exporter)'
    Say '  3 — и то и другое'
    while ($true) {
        switch ((Ask 'Введите 1, 2 или 3 (просто Enter — 1)').Trim()) {
            '' { return 'Pusher' }
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
    $script:Mode = Select-Mode
    $withExporter = $Mode -ne 'Pusher'
    $withPusher = $Mode -ne 'Exporter'
    $port = Get-ListenPort
    $addresses = @(Get-AllowedAddresses)
    if ($OpenFirewall -and $addresses.Count -eq 0) {
        Fail 'С ключом -OpenFirewall укажите, с каких адресов пускать к порту: -AllowFrom и адрес офисного Prometheus (или LocalSubnet).'
    }
    if ($WebConfigFile -and -not (Test-Path -LiteralPath (ConvertTo-FullPath $WebConfigFile) -PathType Leaf)) {
        Fail "Файл $WebConfigFile не найден."
    }
    if ($addresses.Count -gt 0 -and -not $withExporter) {
        SayWarn "Ключи -OpenFirewall и -AllowFrom нужны только для sitewatch-exporter; в режиме $Mode порт не открываю."
    }

    SayStep 'Подготовка комплекта'
    # Files from a downloaded zip carry the "from the internet" mark, and Windows asks about each one.
    # Only the bundle's own files: the folder it was unpacked into may hold anything else.
    $bundleFiles = @(Get-ChildItem -LiteralPath $bundle -File)
    foreach ($folder in @($wheels, (Join-Path $bundle 'examples'))) {
        if (Test-Path -LiteralPath $folder -PathType Container) { $bundleFiles += @(Get-ChildItem -LiteralPath $folder -Recurse -File) }
    }
    $bundleFiles | Unblock-File -ErrorAction SilentlyContinue
    $support = Get-BundleSupport $wheels
    Say "Пакеты комплекта подходят к такому Python: $(Get-SupportText $support)."

    SayStep 'Поиск Python'
    $pythonInfo = Find-Python $support
    SayOk "Выбран Python 3.$($pythonInfo.Minor), $(Get-BitsLabel $pythonInfo.Bits): $($pythonInfo.Path)"

    SayStep 'Настройки'
    $configFile = Initialize-Config $bundle
    Protect-ConfigFolder
    Test-EnvironmentSecrets $configFile

    SayStep 'Установка программы'
    Remove-LegacyAgents
    Suspend-AgentTasks
    $venv = Install-Program $pythonInfo $wheels
    $exporter = Join-Path $venv 'Scripts\sitewatch-exporter.exe'
    $pusher = Join-Path $venv 'Scripts\sitewatch-pusher.exe'

    SayStep 'Проверка настроек (sitewatch-exporter validate)'
    Confirm-ConfigValid $exporter $configFile
    Invoke-TrialRun $exporter $pusher $configFile

    SayStep 'Регистрация в планировщике заданий'
    $logs = Join-Path $ConfigDir 'logs'
    $started = @()
    if ($withPusher) {
        $log = Join-Path $logs "$PusherTask.log"
        Register-AgentTask $PusherTask $pusher @('--config', $configFile, '--log.file', $log) `
            'Агент sitewatch: проверки площадки и отправка результатов в офис.'
        $started += [pscustomobject]@{ Name = $PusherTask; Log = $log }
    } elseif (Remove-AgentTask $PusherTask) {
        Say "Задача $TaskFolder$PusherTask удалена: в режиме $Mode она не нужна."
    }
    if ($withExporter) {
        $log = Join-Path $logs "$ExporterTask.log"
        $arguments = @('run', '--config', $configFile, '--web.listen-address', $ListenAddress, '--log.file', $log)
        if ($WebConfigFile) { $arguments += @('--web.config.file', (ConvertTo-FullPath $WebConfigFile)) }
        Register-AgentTask $ExporterTask $exporter $arguments 'Агент sitewatch: проверки площадки и страница метрик для Prometheus.'
        $started += [pscustomobject]@{ Name = $ExporterTask; Log = $log }
    } elseif (Remove-AgentTask $ExporterTask) {
        Say "Задача $TaskFolder$ExporterTask удалена: в режиме $Mode она не нужна."
        Remove-FirewallRules @($ExporterRuleName)
    }
    # The new definitions are enabled: nothing suspended is to be given back if something fails now.
    $script:SuspendedTasks = @()
    foreach ($task in $started) {
        if ("$((Get-AgentTask $task.Name).State)" -ne 'Running') {
            Start-ScheduledTask -TaskPath $TaskFolder -TaskName $task.Name
        }
        Say "Задача $TaskFolder$($task.Name) зарегистрирована и запущена."
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
    foreach ($task in $started) {
        if (-not (Show-TaskState $task.Name $task.Log)) { $healthy = $false }
    }
    $runningExporter = $null
    if ($withExporter) { $runningExporter = Get-AgentTask $ExporterTask }
    if ($runningExporter -and "$($runningExporter.State)" -eq 'Running') {
        $probeHost = Get-ListenHost
        if (-not $probeHost) { $probeHost = '127.0.0.1' }
        $listening = $false
        foreach ($attempt in 1..15) {
            if (Test-TcpPort $probeHost $port) { $listening = $true; break }
            Start-Sleep -Seconds 1
        }
        if ($listening) {
            SayOk "sitewatch-exporter принимает соединения на порту $port."
        } else {
            SayError "sitewatch-exporter работает, но порт $port не отвечает. Загляните в журнал $(Join-Path $logs "$ExporterTask.log")."
            $healthy = $false
        }
    }

    SayStep 'Готово'
    if ($withExporter) {
        $scheme = 'http'
        if ($WebConfigFile -and (Get-Content -LiteralPath (ConvertTo-FullPath $WebConfigFile) -Encoding UTF8 | Where-Object { $_ -match '^\s*tls_server_config\s*:' })) { $scheme = 'https' }
        $pageHost = Get-ListenHost
        if ($pageHost) {
            if ($pageHost.Contains(':')) { $pageHost = "[$pageHost]" }
            Say "Страница состояния: $($scheme)://$($pageHost):$port/"
        } else {
            Say "Страница состояния: $($scheme)://127.0.0.1:$port/ (с других компьютеров: $($scheme)://$($env:COMPUTERNAME):$port/)"
        }
    }
    Say "Журналы агента: $logs"
    Say "Настройки: $configFile. Открывайте его Блокнотом, запущенным от имени администратора: остальным папка закрыта."
    Say 'После правки настроек запустите install.cmd ещё раз: он проверит их и перезапустит агент.'
    Say 'Задачи видны в планировщике заданий (taskschd.msc, папка sitewatch). Если агент остановится, планировщик запустит его снова в течение минуты; чтобы остановить агент надолго, отключите задачу там.'
    Say "Удалить агент: uninstall.cmd в папке $InstallDir"
    if (-not $healthy) {
        $script:ExitCode = 1
        SayError 'Агент установлен, но работает не всё: см. сообщения выше.'
    }
}

function Uninstall-Agent {
    # The window's folder may be the one being removed (uninstall.cmd in the install folder).
    Set-Location -LiteralPath $env:SystemRoot
    SayStep 'Удаление агента sitewatch'
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
    Resume-SuspendedTasks
} finally {
    Restore-Session
    if ($PauseAtEnd -and $script:Interactive) { [void](Ask 'Нажмите Enter, чтобы закрыть окно') }
}
exit $script:ExitCode
